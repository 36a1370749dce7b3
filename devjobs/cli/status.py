"""`devjobs status --environment NS/NAME`: each job's latest run for an Environment.

Read from the Jobs and pods when they still exist, else from the Environment's
`Job.<source>.<job>` conditions (Jobs are garbage-collected after their TTL).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--environment", required=True, metavar="NS/NAME", help="the Environment")
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE", help="default: $KUBECONFIG")
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show each job's state, duration and exit code for an Environment",
        description="The latest run of each job of an Environment: state, reason, exit "
        "code, duration, from its Job and pods, or from the Environment's conditions once "
        "the Job is gone.",
    )
    add_connection_arguments(parser)
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
    parser.set_defaults(handler=run)


def latest_jobs(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`source/job` -> its most recently created Job."""
    from devjobs.kube.vocabulary import ANNOTATION_JOB_KEY

    latest: dict[str, dict[str, Any]] = {}
    for job in jobs:
        meta = job.get("metadata") or {}
        key = (meta.get("annotations") or {}).get(ANNOTATION_JOB_KEY)
        if not key:
            continue
        stamp = (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))
        current = latest.get(key)
        if current is None or stamp > (
            str(current["metadata"].get("creationTimestamp") or ""),
            str(current["metadata"].get("name") or ""),
        ):
            latest[key] = job
    return latest


def collect(kube: Any, namespace: str, name: str) -> list[dict[str, str]]:
    from devjobs.kube.jobstate import job_state
    from devjobs.kube.lookups import list_jobs, read_environment
    from devjobs.kube.naming import label_value
    from devjobs.kube.vocabulary import JOB_NAME_LABEL, LABEL_ENVIRONMENT, LABEL_TRIGGER
    from devjobs.resolver import environment as envmod
    from devjobs.runner.cluster.summary import duration

    env_obj = read_environment(kube, namespace, name)
    environment = envmod.from_object(env_obj)
    latest = latest_jobs(list_jobs(kube, environment))
    pods = (
        kube.list(
            f"/api/v1/namespaces/{environment.jobs_namespace}/pods",
            f"{LABEL_ENVIRONMENT}={label_value(environment.name)}",
        ).get("items")
        or []
    )
    rows: list[dict[str, str]] = []
    for key in sorted(latest):
        job = latest[key]
        job_name = job["metadata"]["name"]
        mine = [
            p for p in pods if (p["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == job_name
        ]
        state = job_state(job, mine)
        rows.append(
            {
                "job": key,
                "trigger": (job["metadata"].get("labels") or {}).get(LABEL_TRIGGER, ""),
                "state": state.phase.value,
                "reason": state.reason,
                "exitCode": "" if state.exit_code is None else str(state.exit_code),
                "duration": duration(state),
                "jobName": job_name,
                "message": state.message,
            }
        )
    rows += rows_from_conditions(env_obj, set(latest))
    return rows


def rows_from_conditions(env_obj: Mapping[str, Any], known: set[str]) -> list[dict[str, str]]:
    """Jobs whose Job object is gone, as their condition last said."""
    rows = []
    for cond in ((env_obj.get("status") or {}).get("conditions")) or []:
        ctype = str(cond.get("type") or "")
        if not ctype.startswith("Job."):
            continue
        source, _, job = ctype[len("Job.") :].partition(".")
        key = f"{source}/{job}"
        if key in known or not job:
            continue
        rows.append(
            {
                "job": key,
                "trigger": "",
                "state": str(cond.get("reason") or ""),
                "reason": str(cond.get("reason") or ""),
                "exitCode": "",
                "duration": "",
                "jobName": "(gone)",
                "message": str(cond.get("message") or "").split("\n")[0],
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    from devjobs.kube.client import connect
    from devjobs.resolver.environment import parse_ref
    from devjobs.runner.cluster.summary import format_table

    namespace, name = parse_ref(args.environment)
    rows = collect(connect(args.kubeconfig, args.context), namespace, name)
    if args.output == "json":
        sys.stdout.write(json.dumps({"jobs": rows}, indent=2, sort_keys=True) + "\n")
        return 0
    if not rows:
        sys.stdout.write("No jobs.\n")
        return 0
    header = ("JOB", "TRIGGER", "STATE", "REASON", "EXIT", "DURATION", "KUBERNETES JOB")
    table = [header] + [
        (
            r["job"],
            r["trigger"],
            r["state"],
            r["reason"],
            r["exitCode"],
            r["duration"],
            r["jobName"],
        )
        for r in rows
    ]
    sys.stdout.write(format_table(table))
    return 0
