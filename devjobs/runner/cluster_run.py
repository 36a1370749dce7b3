"""`devjobs run` on a cluster: create one trigger's Jobs (or the named jobs) for an
Environment, follow them, stream their logs, report them, exit non-zero on a failure.

Order, so bad input leaves nothing half-applied: read the Environment, resolve and render
everything, check the workload exists, server-side-apply every object as a dry run, and
only then apply for real. A Job that already exists (same job, spec and commit) is not
applied again: it is followed, and its result reported (`--rerun` starts a new attempt).

With a GitHub token ($DEVJOBS_GITHUB_TOKEN, else $GITHUB_TOKEN) each job of a source whose
repositoryUrl is on github.com gets a commit status `devjobs/<source>/<job>` on the commit
it ran: `pending` when its Job is created, `success`/`failure`/`error` when it ends.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from devjobs.errors import DevjobsError
from devjobs.runner import environment as envmod
from devjobs.runner.jobstate import JobState, Phase
from devjobs.runner.kubeapi import Kube, KubeError, collection_path, connect, describe
from devjobs.runner.render import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_BASE_HASH,
    LABEL_ENVIRONMENT,
    Rendered,
    RenderedJob,
    render,
)

if TYPE_CHECKING:
    from devjobs.runner.report import CommitStatuses


def add_cluster_arguments(parser: Any, *, selection: bool = True) -> None:
    """`run`'s cluster options and the render options (`--workspace`, `--git-secret`...);
    with `selection` also JOB..., --trigger and --image (leave them out when the caller's
    parser has them). `parser` may be an argument group."""
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE", help="default: $KUBECONFIG")
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context")
    parser.add_argument(
        "--rerun", action="store_true", help="start a fresh attempt even if these jobs ran"
    )
    parser.add_argument("--no-logs", action="store_true", help="do not stream job logs")
    parser.add_argument(
        "--detach", action="store_true", help="create the Jobs and exit without following them"
    )
    parser.add_argument(
        "--github-api-url",
        default="https://api.github.com",
        metavar="URL",
        help="GitHub API for commit statuses (posted when $DEVJOBS_GITHUB_TOKEN or "
        "$GITHUB_TOKEN is set; default: https://api.github.com)",
    )
    parser.add_argument(
        "--target-url",
        metavar="TEMPLATE",
        help="the commit statuses' link, with {repo} (owner/name), {owner}, {name}, {sha}, "
        "{context} (devjobs/SOURCE/JOB), {source} and {job} filled in (URL-quoted), e.g. "
        "https://ci.example/{repo}/commit/{sha}/{job}",
    )
    from devjobs.cli.render import add_render_arguments

    add_render_arguments(parser, selection=selection)


def run_on_cluster(
    args: argparse.Namespace, kube: Kube | None = None, out: TextIO | None = None
) -> int:
    """The cluster path of `devjobs run`; `args.environment` is `NAMESPACE/NAME`."""
    out = out or sys.stdout
    github = github_client(args)  # a bad --target-url fails before anything is read
    kube = kube or connect(getattr(args, "kubeconfig", None), getattr(args, "context", None))
    namespace, name = envmod.parse_ref(str(args.environment))
    env_obj = read_environment(kube, namespace, name)
    environment = envmod.from_dict(env_obj, place=f"Environment {namespace}/{name}")
    plan = resolve_plan(args, env_obj)

    from devjobs.cli.render import options_from_args

    options = options_from_args(args)
    existing = list_jobs(kube, environment)
    attempts = choose_attempts(render(plan, environment, options), existing, args.rerun)
    rendered = render(plan, environment, replace(options, attempts=attempts))
    if not rendered.jobs and rendered.workload_patch is None:
        out.write("devjobs: no jobs to run\n")
        return 0

    names = {str(j["metadata"]["name"]) for j in existing}
    new_jobs = [job for job in rendered.jobs if job.name not in names]
    patch = workload_patch_to_apply(kube, rendered)
    objects = [job.manifest for job in new_jobs] + ([patch] if patch else [])
    applied_patch: dict[str, Any] | None = None
    for dry_run in (True, False):
        for obj in objects:
            try:
                result = kube.apply(obj, dry_run=dry_run)
                if obj is patch and not dry_run:
                    applied_patch = result
            except KubeError as error:
                meta = obj["metadata"]
                raise DevjobsError(
                    f"{obj['kind']} {meta['namespace']}/{meta['name']}", describe(error)
                ) from None
    for job in rendered.jobs:
        verb = "created" if job in new_jobs else "exists"
        out.write(f"devjobs: {job.key} -> job/{job.name} ({verb})\n")
    if patch is not None:
        count = len(patch["spec"]["template"]["spec"]["initContainers"])
        out.write(
            f"devjobs: deployment/{patch['metadata']['name']}: {count} devjobs init containers\n"
        )
    out.flush()
    statuses = None
    if github is not None:
        from devjobs.runner.report import CommitStatuses

        repositories = {s.name: s.repository_url for s in plan.sources}
        statuses = CommitStatuses(github, repositories, err=sys.stderr)
        for job in new_jobs:
            statuses.created(created_state(job))
    if args.detach:
        return 0
    code = 0
    if rendered.jobs:
        states = follow_jobs(
            kube, environment, env_obj, rendered.jobs, out, logs=not args.no_logs,
            statuses=statuses,
        )  # fmt: skip
        code = print_summary(rendered.jobs, states, out)
    if patch is not None and applied_patch is not None:
        init_names = [c["name"] for c in patch["spec"]["template"]["spec"]["initContainers"]]
        if init_names and follow_rollout(kube, applied_patch, init_names, out) != 0:
            code = 1
    return code


ROLLOUT_TIMEOUT_SECONDS = 600.0


def follow_rollout(
    kube: Kube,
    deployment: Mapping[str, Any],
    names: Sequence[str],
    out: TextIO,
    timeout: float = ROLLOUT_TIMEOUT_SECONDS,
) -> int:
    """Follow the workload's rollout after the PreDeploy patch: the new ReplicaSet's pods
    run devjobs' init containers `names`; 0 when one pod ran them all successfully, 1 as
    soon as one of them fails (the pod is held back: a failed job), or on timeout."""
    import time

    meta = deployment["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation") or 0)
    apps = collection_path("apps/v1", "Deployment", namespace)
    pods_path = collection_path("v1", "Pod", namespace)
    rs_path = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            current = kube.get(f"{apps}/{name}")
            if current is None:
                out.write(f"devjobs: deployment/{name} was deleted during its rollout\n")
                return 1
            status = current.get("status") or {}
            revision = (current["metadata"].get("annotations") or {}).get(
                "deployment.kubernetes.io/revision"
            )
            if int(status.get("observedGeneration") or 0) < generation or revision is None:
                time.sleep(0.5)
                continue
            uid = current["metadata"]["uid"]
            hashes = [
                (rs["metadata"].get("labels") or {}).get("pod-template-hash")
                for rs in kube.list(rs_path)["items"]
                if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
                and (rs["metadata"].get("annotations") or {}).get(
                    "deployment.kubernetes.io/revision"
                )
                == revision
            ]
            pods = kube.list(pods_path, f"pod-template-hash={hashes[0]}")["items"] if hashes else []
        except KubeError as error:  # an API server blip: try again
            out.write(f"devjobs: warning: following deployment/{name}: {describe(error)}\n")
            time.sleep(1)
            continue
        for pod in pods:
            done: set[str] = set()
            for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
                if cs.get("name") not in names:
                    continue
                for key in ("state", "lastState"):
                    term = (cs.get(key) or {}).get("terminated")
                    if term and term.get("exitCode") not in (None, 0):
                        out.write(
                            f"devjobs: deployment/{name}: init container {cs['name']} of pod "
                            f"{pod['metadata']['name']} exited with code {term['exitCode']}: "
                            "the workload is held back\n"
                        )
                        out.flush()
                        return 1
                    if term and term.get("exitCode") == 0:
                        done.add(str(cs["name"]))
            if done >= set(names):
                out.write(f"devjobs: deployment/{name}: {len(names)} devjobs init containers "
                          "succeeded\n")  # fmt: skip
                out.flush()
                return 0
        time.sleep(1)
    out.write(f"devjobs: deployment/{name}: rollout not done after {timeout:.0f}s\n")
    return 1


def github_client(args: argparse.Namespace) -> Any:
    """A `GitHubStatuses` when a token is set, else None. Short retries: a run waits for
    its jobs, not for GitHub."""
    import os

    from devjobs.runner.github import GitHubStatuses
    from devjobs.runner.report import github_token

    token = github_token(os.environ)
    if token is None:
        return None
    return GitHubStatuses(
        token,
        api_url=getattr(args, "github_api_url", None) or "https://api.github.com",
        target_url_template=getattr(args, "target_url", None),
        max_retries=2,
        max_wait=10.0,
    )


def created_state(job: RenderedJob) -> JobState:
    """The state a job has the moment its Job is created (its `pending` status)."""
    return JobState(
        source=job.config.source,
        job=job.config.name,
        phase=Phase.PENDING,
        reason="Pending",
        exit_code=None,
        started=None,
        finished=None,
        message="job created",
        commit=job.commit,
        job_name=job.name,
    )


def read_environment(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    path = f"{collection_path(envmod.API_VERSION, envmod.KIND, namespace)}/{name}"
    place = f"Environment {namespace}/{name}"
    try:
        obj = kube.get(path)
    except KubeError as error:
        raise DevjobsError(place, describe(error)) from None
    if obj is None:
        raise DevjobsError(place, f"not found (no such Environment in namespace {namespace!r})")
    return obj


def resolve_plan(args: argparse.Namespace, env_obj: Mapping[str, Any]) -> Any:
    """The plan, pinned to the live Environment's commits."""
    from devjobs.cli.plan import request_from_args
    from devjobs.resolver.plan import resolve

    request = replace(request_from_args(args), environment_file=None, environment_object=env_obj)
    return resolve(request).plan


def list_jobs(kube: Kube, environment: envmod.Environment) -> list[dict[str, Any]]:
    from devjobs.runner.naming import label_value

    path = collection_path("batch/v1", "Job", environment.namespace)
    selector = f"{LABEL_ENVIRONMENT}={label_value(environment.name)}"
    try:
        items: list[dict[str, Any]] = kube.list(path, selector).get("items") or []
    except KubeError as error:
        raise DevjobsError(f"jobs in namespace {environment.namespace}", describe(error)) from None
    return items


def choose_attempts(
    first: Rendered, existing: Sequence[Mapping[str, Any]], rerun: bool
) -> dict[str, int]:
    """Per job: the latest attempt already made of this exact run (re-find it), or the
    next one with `--rerun`."""
    latest: dict[str, int] = {}
    for job in existing:
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        base = annotations.get(ANNOTATION_BASE_HASH)
        try:
            attempt = int(annotations.get(ANNOTATION_ATTEMPT, "0"))
        except ValueError:
            continue
        if base:
            latest[base] = max(latest.get(base, -1), attempt)
    attempts: dict[str, int] = {}
    for rendered in first.jobs:
        if rendered.base_hash in latest:
            attempts[rendered.key] = latest[rendered.base_hash] + (1 if rerun else 0)
    return attempts


def workload_patch_to_apply(kube: Kube, rendered: Rendered) -> dict[str, Any] | None:
    """The workload patch when there is one to apply: a missing Deployment is an error
    only when devjobs wants init containers in it."""
    patch = rendered.workload_patch
    if patch is None:
        return None
    meta = patch["metadata"]
    path = f"{collection_path('apps/v1', 'Deployment', meta['namespace'])}/{meta['name']}"
    try:
        current = kube.get(path)
    except KubeError as error:
        raise DevjobsError(
            f"Deployment {meta['namespace']}/{meta['name']}", describe(error)
        ) from None
    if current is None:
        if patch["spec"]["template"]["spec"]["initContainers"]:
            raise DevjobsError(
                f"Deployment {meta['namespace']}/{meta['name']}",
                "not found: InitContainer jobs need the workload (see --workload)",
            )
        return None
    return patch


def stop_stuck_jobs(
    kube: Kube, namespace: str, states: Mapping[str, JobState], stopped: set[str], out: TextIO
) -> None:
    """Delete the Jobs reported Failed while Kubernetes still thinks they run: a pod
    stuck on an image that cannot be pulled (or another fatal waiting reason) would
    otherwise hold its Job, and the namespace's quota, until the job's deadline."""
    for name, state in states.items():
        # A Job that failed by itself has a finish time (its Failed condition's); one
        # judged by its stuck pod has none.
        if state.phase is not Phase.FAILED or state.finished is not None or name in stopped:
            continue
        stopped.add(name)
        try:
            kube.delete(f"{collection_path('batch/v1', 'Job', namespace)}/{name}")
        except KubeError as error:
            sys.stderr.write(f"devjobs: warning: job/{name} not stopped: {describe(error)}\n")
            continue
        out.write(f"devjobs: {state.key}: deleted job/{name}, which could never start\n")
        out.flush()


def job_prefixes(jobs: Sequence[RenderedJob]) -> dict[str, str]:
    """Job name as the log prefix, `source/job` when two sources share a name."""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.config.name] = counts.get(job.config.name, 0) + 1
    return {j.name: j.config.name if counts[j.config.name] == 1 else j.key for j in jobs}


def follow_jobs(
    kube: Kube,
    environment: envmod.Environment,
    env_obj: Mapping[str, Any],
    jobs: Sequence[RenderedJob],
    out: TextIO,
    logs: bool = True,
    statuses: CommitStatuses | None = None,
) -> dict[str, JobState]:
    from devjobs.runner.follow import Follower, Target
    from devjobs.runner.naming import label_value
    from devjobs.runner.report import Reporter

    prefixes = job_prefixes(jobs)
    targets = [Target(j.name, j.key, prefixes[j.name], j.containers) for j in jobs]
    reporter = Reporter(kube, environment, env_obj, err=sys.stderr)

    stopped: set[str] = set()

    def on_change(states: dict[str, JobState]) -> None:
        reporter.report(states)  # first: the condition and the log record are kept
        if statuses is not None:
            statuses.changed(states)
        stop_stuck_jobs(kube, environment.namespace, states, stopped, out)

    follower = Follower(
        kube=kube,
        namespace=environment.namespace,
        selector=f"{LABEL_ENVIRONMENT}={label_value(environment.name)}",
        targets=targets,
        out=out,
        logs=logs,
        on_change=on_change,
    )
    states = follower.run()
    reporter.report(states, final=True)
    if statuses is not None:
        statuses.changed(states)
    if reporter.failed:
        out.write("devjobs: reporting failed (see warnings above)\n")
    return states


def print_summary(jobs: Sequence[RenderedJob], states: Mapping[str, JobState], out: TextIO) -> int:
    rows = [("JOB", "STATE", "REASON", "EXIT", "DURATION")]
    failed = False
    for job in jobs:
        state = states.get(job.name)
        if state is None:
            rows.append((job.key, "Unknown", "", "", ""))
            failed = True
            continue
        failed = failed or state.phase is not Phase.SUCCEEDED
        rows.append(
            (
                job.key,
                state.phase.value,
                state.reason,
                "" if state.exit_code is None else str(state.exit_code),
                duration(state),
            )
        )
    out.write(format_table(rows))
    out.flush()
    return 1 if failed else 0


def duration(state: JobState) -> str:
    if state.started is None:
        return ""
    if state.finished is None:
        return "-"
    return f"{(state.finished - state.started).total_seconds():.0f}s"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n"
        for row in rows
    )
