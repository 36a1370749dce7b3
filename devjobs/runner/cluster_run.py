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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from devjobs.errors import DevjobsError
from devjobs.kube.client import Kube, KubeError, collection_path, connect, describe
from devjobs.kube.jobstate import InitJob, InitResult, JobState, Phase
from devjobs.kube.render import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_BASE_HASH,
    LABEL_ENVIRONMENT,
    Rendered,
    RenderedJob,
    render,
)
from devjobs.resolver import environment as envmod

if TYPE_CHECKING:
    from devjobs.runner.report import CommitStatuses, Reporter


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
    environment = envmod.from_object(env_obj)
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
    from devjobs.runner.report import Reporter

    reporter = Reporter(kube, environment, env_obj, err=sys.stderr)
    init_names: list[str] = []
    inits: list[InitJob] = []
    if patch is not None and applied_patch is not None:
        from devjobs.kube.workload import init_jobs

        init_names = [c["name"] for c in patch["spec"]["template"]["spec"]["initContainers"]]
        if init_names:
            inits = init_jobs(plan, environment)
    waiting = {init_state_name(j): rollout_pending(j, patch) for j in inits}
    statuses = None
    if github is not None:
        from devjobs.runner.report import CommitStatuses

        repositories = {s.name: s.repository_url for s in plan.sources}
        statuses = CommitStatuses(github, repositories, err=sys.stderr)
        for job in new_jobs:
            statuses.created(created_state(job))
        for state in waiting.values():
            statuses.created(state)
    if args.detach:
        return 0
    code = 0
    states: dict[str, JobState] = {}
    if rendered.jobs:
        states = follow_jobs(
            kube, environment, env_obj, rendered.jobs, out, logs=not args.no_logs,
            statuses=statuses, reporter=reporter, also=waiting,
        )  # fmt: skip
    init_states: dict[str, JobState] = {}
    if init_names and applied_patch is not None:
        init_states = follow_init_jobs(kube, applied_patch, inits, reporter, statuses, states, out)
    if reporter.failed:
        out.write("devjobs: reporting failed (see warnings above)\n")
    if rendered.jobs or init_states:
        code = print_summary(rendered.jobs, states, out, init_states)
    return code


ROLLOUT_TIMEOUT_SECONDS = 600.0


def init_state_name(job: InitJob) -> str:
    """The key of an InitContainer job among the Job-name-keyed states of a run."""
    from devjobs.runner.report import INIT_STATE_PREFIX

    return f"{INIT_STATE_PREFIX}{job.key}"


def rollout_pending(job: InitJob, patch: Mapping[str, Any] | None) -> JobState:
    workload = patch["metadata"]["name"] if patch else "the workload"
    return JobState(
        source=job.source, job=job.job, phase=Phase.PENDING, reason="Pending",
        exit_code=None, started=None, finished=None,
        message=f"runs as an init container of {workload}", commit=job.commit, job_name=None,
    )  # fmt: skip


def follow_init_jobs(
    kube: Kube,
    deployment: Mapping[str, Any],
    jobs: Sequence[InitJob],
    reporter: Reporter,
    statuses: CommitStatuses | None,
    job_states: Mapping[str, JobState],
    out: TextIO,
    timeout: float = ROLLOUT_TIMEOUT_SECONDS,
) -> dict[str, JobState]:
    """Follow the rollout (`follow_rollout`) and report the InitContainer jobs like Jobs:
    their conditions with the Jobs' in the aggregate, log tails of their containers from
    the pod that decided them, GitHub statuses. Returns `init_state_name` -> state."""
    names = {init_state_name(j): j for j in jobs}

    def on_change(results: Mapping[str, InitResult], pods: Mapping[str, Mapping[str, Any]]) -> None:
        states = {n: results[j.key].state for n, j in names.items() if j.key in results}
        logs_from = {
            n: (pods[results[j.key].pod], j.containers)
            for n, j in names.items()
            if j.key in results and results[j.key].pod in pods
        }
        pending = {n: rollout_pending(j, deployment) for n, j in names.items()}
        reporter.report({**job_states, **pending, **states}, logs_from=logs_from)
        if statuses is not None:
            statuses.changed(states)

    results = follow_rollout(kube, deployment, jobs, out, timeout=timeout, on_change=on_change)
    final = {n: results[j.key].state for n, j in names.items() if j.key in results}
    reporter.report({**job_states, **final}, final=True)
    if statuses is not None:
        statuses.changed(final)
    return final


def follow_rollout(
    kube: Kube,
    deployment: Mapping[str, Any],
    jobs: Sequence[InitJob],
    out: TextIO,
    timeout: float = ROLLOUT_TIMEOUT_SECONDS,
    on_change: Callable[[Mapping[str, InitResult], Mapping[str, Mapping[str, Any]]], None]
    | None = None,
) -> dict[str, InitResult]:
    """Follow the workload's rollout after the PreDeploy patch (`deployment`, as applied):
    watch its pods and read their devjobs init containers with
    `jobstate.init_container_results` (the controller's reading) until every InitContainer
    job has a result: Failed as soon as its container (or one before it) fails - the pod
    is held back -, Succeeded when all of its containers exited 0. On timeout the jobs
    without a result are Failed (`DeadlineExceeded`). Returns job key -> result."""
    import time

    from devjobs.kube.jobstate import init_container_results, init_runs

    meta = deployment["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    wanted = [
        c
        for c in deployment["spec"]["template"]["spec"].get("initContainers") or []
        if str(c.get("name", "")).startswith("devjobs-")
    ]
    match = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items())) or None
    pods_path = collection_path("v1", "Pod", namespace)
    deadline = time.monotonic() + timeout
    pods: dict[str, dict[str, Any]] = {}
    results: dict[str, InitResult] = {}
    said: set[str] = set()

    def update() -> bool:
        nonlocal results
        runs = init_runs(list(pods.values()), "devjobs-")
        now = init_container_results(jobs, runs, wanted, name)
        if now != results:
            results = now
            for key, result in sorted(now.items()):
                if key in said:
                    continue
                said.add(key)
                if result.state.reason == "Failed":
                    what = result.state.message.split(f" pod {result.pod} ", 1)[-1]
                    out.write(
                        f"devjobs: deployment/{name}: init container {result.container} of pod "
                        f"{result.pod} {what}: the workload is held back\n"
                    )
                elif result.state.reason == "Blocked":
                    out.write(f"devjobs: {key}: blocked: {result.state.message}\n")
            out.flush()
            if on_change is not None:
                on_change(results, pods)
        return all(j.key in results for j in jobs)

    resource_version = ""
    while time.monotonic() < deadline:
        try:
            if not resource_version:
                listed = kube.list(pods_path, selector)
                pods = {p["metadata"]["name"]: p for p in listed.get("items") or []}
                resource_version = str(listed["metadata"]["resourceVersion"])
                if update():
                    break
            left = max(1, int(deadline - time.monotonic()))
            for event in kube.watch(pods_path, resource_version, selector, min(left, 60)):
                obj = event.get("object") or {}
                resource_version = str(
                    (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                )
                if event.get("type") == "BOOKMARK":
                    continue
                if event.get("type") == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                else:
                    pods[obj["metadata"]["name"]] = obj
                if update():
                    break
            else:
                continue
            break
        except KubeError as error:  # too old a version (410), an API server blip: relist
            if error.status not in (0, 410):
                out.write(f"devjobs: warning: following deployment/{name}: {describe(error)}\n")
                time.sleep(1)
            resource_version = ""
    if all(j.key in results for j in jobs):
        if not any(r.state.phase is Phase.FAILED for r in results.values()):
            count = len(wanted)
            out.write(f"devjobs: deployment/{name}: {count} devjobs init containers succeeded\n")
            out.flush()
        return results
    out.write(f"devjobs: deployment/{name}: rollout not done after {timeout:.0f}s\n")
    out.flush()
    for job in jobs:
        if job.key not in results:
            state = JobState(
                source=job.source, job=job.job, phase=Phase.FAILED,
                reason="DeadlineExceeded", exit_code=None, started=None, finished=None,
                message=f"{name}'s rollout did not run it within {timeout:.0f}s",
                commit=job.commit, job_name=None,
            )  # fmt: skip
            results[job.key] = InitResult(state, "")
    return results


def github_client(args: argparse.Namespace) -> Any:
    """A `GitHubStatuses` when a token is set, else None. Short retries: a run waits for
    its jobs, not for GitHub."""
    import os

    from devjobs.github.statuses import GitHubStatuses
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
    from devjobs.kube.naming import label_value

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
    reporter: Reporter | None = None,
    also: Mapping[str, JobState] | None = None,
) -> dict[str, JobState]:
    """Follow the Jobs to their end, reporting each change; `also` are states reported
    with theirs (InitContainer jobs still waiting for the rollout, so the aggregate
    condition counts them)."""
    from devjobs.kube.naming import label_value
    from devjobs.runner.follow import Follower, Target
    from devjobs.runner.report import Reporter

    prefixes = job_prefixes(jobs)
    targets = [Target(j.name, j.key, prefixes[j.name], j.containers) for j in jobs]
    reporter = reporter or Reporter(kube, environment, env_obj, err=sys.stderr)
    extra = dict(also or {})

    stopped: set[str] = set()

    def on_change(states: dict[str, JobState]) -> None:
        reporter.report({**states, **extra})  # first: the condition and log record are kept
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
    reporter.report({**states, **extra}, final=True)
    if statuses is not None:
        statuses.changed(states)
    return states


def print_summary(
    jobs: Sequence[RenderedJob],
    states: Mapping[str, JobState],
    out: TextIO,
    init_states: Mapping[str, JobState] | None = None,
) -> int:
    """The summary table (Jobs, then InitContainer jobs); 1 when any did not succeed."""
    rows = [("JOB", "STATE", "REASON", "EXIT", "DURATION")]
    failed = False
    listed: list[tuple[str, JobState | None]] = [(j.key, states.get(j.name)) for j in jobs]
    listed += [(s.key, s) for s in (init_states or {}).values()]
    for key, state in listed:
        if state is None:
            rows.append((key, "Unknown", "", "", ""))
            failed = True
            continue
        failed = failed or state.phase is not Phase.SUCCEEDED
        rows.append(
            (
                key,
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
