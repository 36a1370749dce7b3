"""The resolver: devcontainer.json files and a Catalyst Project -> one `JobPlan`.

Reads configuration, never talks to a cluster; every value keeps its origin. `plan` is
the entry (`PlanRequest` -> `resolve`); `models` the plan's types.
"""
