"""The cluster runner: `devjobs run` against an Environment's cluster.

- `run`: the thin executor: read, resolve, render, apply (dry run first), follow, report.
- `follow`: a set of Jobs to their end, with their logs.
- `rollout`: the workload's rollout that runs the InitContainer jobs.
- `report`: conditions (`kube.conditions.environment_conditions`, the controller's own
  definition), log records and GitHub commit statuses.
- `summary`: the table at the end.

The CLI builds a `run.ClusterRun`; nothing here parses arguments or imports the CLI.
"""
