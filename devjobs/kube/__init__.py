"""The Kubernetes layer under both `devjobs run` (`runner.cluster`) and the controller.

Facts, declared once:
- `vocabulary`: every label, annotation, name prefix and field manager devjobs uses;
- `naming`: name rules (Job names, label values, container names, hashes);
- `devjobs.catalyst` (beside this package): everything devjobs believes about Catalyst.

Pure: API JSON or a plan in, objects or frozen data out:
- `podspec`, `render`, `workload`, `workspace`, `images`: a plan's Jobs and the
  workload's init containers;
- `jobstate`: what a Job and its pods (or the workload's pods) say about a job;
- `jobs`: devjobs' Jobs and log records as observed, read back from their metadata;
- `conditions`: conditions on the Environment, and `environment_conditions`, the one
  definition of what they say, shared by both writers.

The shell, small and tested against a real API server:
- `client`: `Kube`, the one API client every request goes through;
- `reflector`: the one list+watch loop;
- `status` (the guarded condition write), `logstore` (log records), `lookups` (reads).
"""
