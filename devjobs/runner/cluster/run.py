"""`devjobs run` on a cluster: create one trigger's Jobs (or the named jobs) for an
Environment, follow them, stream their logs, report them, exit non-zero on a failure.

Order, so bad input leaves nothing half-applied: read the Environment, resolve and render
everything, check the workload exists, server-side-apply every object as a dry run, and
only then apply for real. A Job that already exists (same job, spec and commit) is not
applied again: it is followed, and its result reported (`rerun` starts a new attempt).

With a GitHub client each job of a source whose repositoryUrl is on github.com gets a
commit status `devjobs/<source>/<job>` on the commit it ran: `pending` when its Job is
created, `success`/`failure`/`error` when it ends; with a GitHub App, a check run of that
name instead (`queued`, `in_progress`, `completed` with the log tail).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

from devjobs.errors import DevjobsError
from devjobs.github.statuses import GitHubStatuses
from devjobs.kube import vocabulary as v
from devjobs.kube.client import Kube, KubeError, collection_path, describe
from devjobs.kube.jobs import environment_label, jobs_with_pods
from devjobs.kube.jobstate import InitJob, JobState, Phase, declared_state
from devjobs.kube.lookups import list_jobs, read_environment
from devjobs.kube.podspec import RenderOptions, runtime_context
from devjobs.kube.render import Rendered, RenderedJob, render, select_jobs, with_attempt
from devjobs.kube.workload import init_jobs
from devjobs.resolver import environment as envmod
from devjobs.resolver.models import Trigger
from devjobs.resolver.plan import PlanRequest, resolve
from devjobs.runner.cluster.follow import Follower, Target
from devjobs.runner.cluster.report import GitHubAppRun, JobReports, Reporter, job_reports
from devjobs.runner.cluster.rollout import follow_init_jobs, init_state_name, rollout_pending
from devjobs.runner.cluster.summary import print_summary


@dataclass(frozen=True)
class ClusterRun:
    """What to run: built by the CLI from `devjobs run`'s arguments."""

    namespace: str
    environment: str
    plan: PlanRequest
    """How to resolve the plan; it is pinned to the live Environment's commits here."""
    options: RenderOptions
    rerun: bool = False
    logs: bool = True
    detach: bool = False
    github: GitHubStatuses | None = None
    github_app: GitHubAppRun | None = None
    """With an App: check runs instead of commit statuses (`report.job_reports`)."""


def run_on_cluster(request: ClusterRun, kube: Kube, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    env_obj = read_environment(kube, request.namespace, request.environment)
    environment = envmod.from_object(env_obj)
    plan_request = replace(request.plan, environment_file=None, environment_object=env_obj)
    plan = resolve(plan_request).plan
    existing = list_jobs(kube, environment)
    options = request.options
    patches = options.trigger is Trigger.PRE_DEPLOY and not options.jobs
    runtime_wanted = any(job.gets_runtime_context for job, _ in select_jobs(plan, options))
    workload = (
        read_workload(kube, environment.jobs_namespace, options.workload)
        if patches or runtime_wanted
        else None
    )
    # The Project's template type is not at hand here: helm charts' main container is
    # taken to be named as in production mode.
    runtime = runtime_context(workload, environment.main_container(None), environment.url)
    first = render(plan, environment, replace(request.options, runtime=runtime))
    attempts = choose_attempts(first, existing, request.rerun)
    jobs = tuple(
        with_attempt(job, attempts[job.key], environment) if attempts.get(job.key) else job
        for job in first.jobs
    )
    rendered = replace(first, jobs=jobs)
    if not rendered.jobs and rendered.workload_patch is None:
        out.write("devjobs: no jobs to run\n")
        return 0

    names = {str(j["metadata"]["name"]) for j in existing}
    new_jobs = [job for job in rendered.jobs if job.name not in names]
    patch = workload_patch_to_apply(workload, rendered)
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
    observed = [j for j in jobs_with_pods(existing, []) if j.name not in {r.name for r in jobs}]
    manual = bool(request.options.jobs)
    reporter = Reporter(kube, environment, env_obj, plan, observed, sys.stderr, manual=manual)
    inits: list[InitJob] = []
    if applied_patch is not None and applied_patch["spec"]["template"]["spec"]["initContainers"]:
        inits = init_jobs(plan, environment)
    waiting = {init_state_name(j): rollout_pending(j, patch) for j in inits}
    statuses = job_reports(
        request.github, request.github_app, plan, reporter, sys.stderr,
        project_file=request.plan.project_file, cache_dir=request.plan.cache_dir,
    )  # fmt: skip
    if statuses is not None:
        for job in new_jobs:
            statuses.created(created_state(job))
        for state in waiting.values():
            statuses.created(state)
    if request.detach:
        return 0
    states: dict[str, JobState] = {}
    if rendered.jobs:
        states = follow_jobs(
            kube, environment, rendered.jobs, out, logs=request.logs,
            statuses=statuses, reporter=reporter, also=waiting,
        )  # fmt: skip
    init_states: dict[str, JobState] = {}
    if inits and applied_patch is not None:
        init_states = follow_init_jobs(kube, applied_patch, inits, reporter, statuses, states, out)
    if reporter.failed:
        out.write("devjobs: reporting failed (see warnings above)\n")
    if rendered.jobs or init_states:
        return print_summary(rendered.jobs, states, out, init_states)
    return 0


def created_state(job: RenderedJob) -> JobState:
    """The state a job has the moment its Job is created (its `pending` status)."""
    state = declared_state(
        job.config.source, job.config.name, Phase.PENDING, "Pending", "job created", job.commit
    )
    return replace(state, job_name=job.name)


def choose_attempts(
    first: Rendered, existing: Sequence[Mapping[str, Any]], rerun: bool
) -> dict[str, int]:
    """Per job: the latest attempt already made of this exact run (re-find it), or the
    next one with `--rerun`; jobs never run before are left out (attempt 0)."""
    latest: dict[str, int] = {}
    for job in existing:
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        base = annotations.get(v.ANNOTATION_BASE_HASH)
        try:
            attempt = int(annotations.get(v.ANNOTATION_ATTEMPT, "0"))
        except ValueError:
            continue
        if base:
            latest[base] = max(latest.get(base, -1), attempt)
    attempts: dict[str, int] = {}
    for rendered in first.jobs:
        if rendered.base_hash in latest:
            attempts[rendered.key] = latest[rendered.base_hash] + (1 if rerun else 0)
    return attempts


def read_workload(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The workload Deployment, or None when there is none (yet)."""
    path = f"{collection_path('apps/v1', 'Deployment', namespace)}/{name}"
    try:
        return kube.get(path)
    except KubeError as error:
        raise DevjobsError(f"Deployment {namespace}/{name}", describe(error)) from None


def workload_patch_to_apply(
    current: Mapping[str, Any] | None, rendered: Rendered
) -> dict[str, Any] | None:
    """The workload patch when there is one to apply: a missing Deployment is an error
    only when devjobs wants init containers in it."""
    patch = rendered.workload_patch
    if patch is None:
        return None
    meta = patch["metadata"]
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
    jobs: Sequence[RenderedJob],
    out: TextIO,
    *,
    reporter: Reporter,
    logs: bool = True,
    statuses: JobReports | None = None,
    also: Mapping[str, JobState] | None = None,
) -> dict[str, JobState]:
    """Follow the Jobs to their end, reporting each change; `also` are states reported
    with theirs (InitContainer jobs still waiting for the rollout, so the aggregate
    condition counts them)."""
    prefixes = job_prefixes(jobs)
    targets = [Target(j.name, j.key, prefixes[j.name], j.containers) for j in jobs]
    extra = dict(also or {})

    stopped: set[str] = set()

    def on_change(states: dict[str, JobState]) -> None:
        reporter.report({**states, **extra})  # first: the condition and log record are kept
        if statuses is not None:
            statuses.changed(states)
        stop_stuck_jobs(kube, environment.jobs_namespace, states, stopped, out)

    follower = Follower(
        kube=kube,
        namespace=environment.jobs_namespace,
        selector=f"{v.LABEL_ENVIRONMENT}={environment_label(environment.name)}",
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
