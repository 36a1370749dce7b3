"""`runAs: InitContainer` jobs: their states, read from the workload's pods, and the
commit statuses they get.

Their containers run in the workload's pods (labelled `vocabulary.LABEL_WORKLOAD`):
False/Failed when their init container failed in a pod whose devjobs init containers
are the current ones, True when all of theirs exited 0 (or the workload is Ready at
this commit). Their commit status is `pending` from the moment the workload patch
carrying the job is applied for the current commit (this round, or already in the
workload) until its init container's result; a round that applies the patch is
`pending` whatever the old template's rollout says. When the Environment moves to
another commit while such a job's last posted status is still `pending` (recorded on
the workload), that commit gets `error`, "superseded", as an unfinished Job of an old
commit does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from devjobs.controller.observe import Observed
from devjobs.kube.conditions import short
from devjobs.kube.jobstate import InitJob, JobState, Phase, declared_state
from devjobs.kube.jobstate import init_container_states as read_init_states
from devjobs.kube.workload import init_jobs
from devjobs.resolver.models import JobConfig, JobPlan, RunAs


def init_container_states(
    observed: Observed, plan: JobPlan, wanted: Sequence[Mapping[str, Any]]
) -> dict[str, JobState]:
    """Job key -> state of each InitContainer job whose containers already ran in a
    workload pod with the current spec (`wanted`); jobs with no such run are left out."""
    workload = observed.workload
    if workload is None:
        return {}
    return read_init_states(init_jobs(plan), workload.init_runs, wanted, observed.workload_name)


def init_job_state(
    job: JobConfig, init_states: Mapping[str, JobState], workload_ready: bool, workload: str
) -> JobState:
    """An InitContainer job's state once its workload patch is applied: its init
    container's result, else Succeeded when the workload is Ready (its rollout ran the
    containers), else Pending. The condition and the commit status both say this."""
    if job.key in init_states:
        return init_states[job.key]
    if workload_ready:
        message = f"ran as an init container of {workload}"
        return declared_state(job.source, job.name, Phase.SUCCEEDED, "Succeeded", message)
    message = f"runs as an init container of {workload}"
    return declared_state(job.source, job.name, Phase.PENDING, "Waiting", message)


def init_statuses(
    observed: Observed,
    plan: JobPlan,
    wanted: Sequence[Mapping[str, Any]],
    *,
    applying: bool,
    workload_ready: bool,
) -> dict[str, JobState]:
    """The InitContainer jobs whose containers are in the workload patch (`wanted`,
    rendered for a fired PreDeploy) and so in the workload once this round has run, with
    the state to post. `applying`: this round applies the patch, so the workload's
    readiness is the old template's and says nothing about these containers."""
    if observed.workload is None or not wanted:
        return {}
    names = {str(c["name"]) for c in wanted}
    inits: dict[str, InitJob] = {j.key: j for j in init_jobs(plan, observed.environment)}
    results = init_container_states(observed, plan, wanted)
    statuses: dict[str, JobState] = {}
    for job in plan.jobs:
        init = inits.get(job.key)
        if job.run_as is not RunAs.INIT_CONTAINER or init is None or not init.commit:
            continue
        if not init.containers or not set(init.containers) <= names:
            continue
        ready = workload_ready and not applying
        state = init_job_state(job, results, ready, observed.workload_name)
        statuses[job.key] = dataclasses.replace(state, commit=init.commit)
    return statuses


def init_cancelled(
    observed: Observed, plan: JobPlan, current: Mapping[str, str]
) -> tuple[JobState, ...]:
    """Cancelled states at their old commit, from the posted states the workload records.
    Only jobs still in the plan: a record is named after its job, and the name of a job
    the plan dropped cannot be read back from it."""
    workload = observed.workload
    if workload is None:
        return ()
    cancelled = []
    for job in plan.jobs:
        if job.run_as is not RunAs.INIT_CONTAINER:
            continue
        recorded = workload.recorded_github_state(job.key)
        now = current.get(job.source)
        if recorded is None or now is None:
            continue
        commit, state = recorded
        if state == "pending" and commit != now:
            message = f"superseded by commit {short(now)} before its init container finished"
            cancelled.append(
                declared_state(job.source, job.name, Phase.CANCELLED, "Superseded", message, commit)
            )
    return tuple(cancelled)
