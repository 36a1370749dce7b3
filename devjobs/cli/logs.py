"""`devjobs logs --environment NS/NAME JOB [-f]`: a job's output, from its pods while they
exist (following them with -f), else from the log tail devjobs kept in a ConfigMap."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from devjobs.errors import DevjobsError


def register(subparsers: Any) -> None:
    from devjobs.cli.status import add_connection_arguments

    parser = subparsers.add_parser(
        "logs",
        help="print or follow a job's logs, also after its pods are gone",
        description="The logs of a job's latest run (JOB or SOURCE/JOB), each line prefixed "
        "by the container when the pod has several.",
    )
    add_connection_arguments(parser)
    parser.add_argument("job", metavar="JOB")
    parser.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from devjobs.cli.status import latest_jobs
    from devjobs.kube.client import connect
    from devjobs.kube.lookups import list_jobs, read_environment
    from devjobs.kube.vocabulary import JOB_NAME_LABEL
    from devjobs.resolver import environment as envmod

    namespace, name = envmod.parse_ref(args.environment)
    kube = connect(args.kubeconfig, args.context)
    env_obj = read_environment(kube, namespace, name)
    environment = envmod.from_object(env_obj)
    latest = latest_jobs(list_jobs(kube, environment))
    sources = [s.name for s in environment.sources]
    key = pick_key(args.job, set(latest), sources)
    job = latest.get(key)
    out = sys.stdout
    jobs_namespace = environment.jobs_namespace
    if job is not None:
        pods = (
            kube.list(
                f"/api/v1/namespaces/{jobs_namespace}/pods",
                f"{JOB_NAME_LABEL}={job['metadata']['name']}",
            ).get("items")
            or []
        )
        if pods and args.follow:
            return follow(kube, environment, job, out)
        if pods:
            pod = sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))[-1]
            print_pod_logs(kube, jobs_namespace, pod, out)
            return 0
    from devjobs.kube.logstore import read_log_tail

    tails = read_log_tail(kube, jobs_namespace, name, key)
    if not tails:
        raise DevjobsError(args.job, f"no logs kept for {key} in {namespace}/{name}")
    many = len(tails) > 1
    for container, text in tails.items():
        for line in text.splitlines():
            out.write(f"[{container}] {line}\n" if many else f"{line}\n")
    return 0


def pick_key(wanted: str, keys: set[str], sources: list[str]) -> str:
    if "/" in wanted:
        return wanted
    matches = sorted(k for k in keys if k.split("/", 1)[1] == wanted)
    if len(matches) > 1:
        raise DevjobsError(wanted, f"ambiguous: name one of {', '.join(matches)}")
    if matches:
        return matches[0]
    if len(sources) == 1:
        return f"{sources[0]}/{wanted}"
    raise DevjobsError(wanted, "no such job has run in this Environment (give SOURCE/JOB)")


def print_pod_logs(kube: Any, namespace: str, pod: dict[str, Any], out: Any) -> None:
    from devjobs.kube.client import KubeError

    spec = pod.get("spec") or {}
    names = [c["name"] for f in ("initContainers", "containers") for c in spec.get(f) or []]
    for container in names:
        try:
            for line in kube.log_lines(namespace, pod["metadata"]["name"], container, follow=False):
                out.write(f"[{container}] {line}\n" if len(names) > 1 else f"{line}\n")
        except KubeError as error:
            if error.status not in (400, 404):  # a container that never started has no log
                raise DevjobsError(f"pod {pod['metadata']['name']}", error.message) from None
    out.flush()


def follow(kube: Any, environment: Any, job: dict[str, Any], out: Any) -> int:
    from devjobs.kube.jobstate import Phase
    from devjobs.kube.vocabulary import ANNOTATION_CONTAINERS, ANNOTATION_JOB_KEY, JOB_NAME_LABEL
    from devjobs.runner.cluster.follow import Follower, Target

    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    key = annotations.get(ANNOTATION_JOB_KEY, meta["name"])
    containers = tuple((annotations.get(ANNOTATION_CONTAINERS) or "").split(","))
    target = Target(meta["name"], key, key.split("/", 1)[-1], containers)
    states = Follower(
        kube=kube,
        namespace=environment.jobs_namespace,
        selector=f"{JOB_NAME_LABEL}={meta['name']}",
        targets=[target],
        out=out,
    ).run()
    state = states.get(meta["name"])
    return 0 if state is not None and state.phase is Phase.SUCCEEDED else 1
