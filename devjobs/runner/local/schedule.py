"""Which jobs a local run runs, and in what order (pure: no processes, no clock).

The order is the cluster runner's: lifecycle points in `LIFECYCLE_ORDER`, a later point
only once the earlier ones succeeded; within a point, jobs in plan order and independent
of one another. `Manual` jobs run only when named (or with `--trigger Manual`) and come
last. Each job carries the setup jobs (on-create, ...) it runs first, resolved here so
a missing one is an input error before anything starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devjobs.errors import DevjobsError
from devjobs.resolver.models import LIFECYCLE_ORDER, JobConfig, JobPlan, RunAs, Trigger

STAGE_ORDER: tuple[Trigger, ...] = (*LIFECYCLE_ORDER, Trigger.MANUAL)


@dataclass(frozen=True)
class Unit:
    """One job to run, with the setup jobs of its source to run before it."""

    job: JobConfig
    setup: tuple[JobConfig, ...] = ()
    """Run first, as steps of this job (on the docker backend: in its container)."""
    needs: tuple[Unit, ...] = ()
    """Must have run, and succeeded, before this job starts: for an init-container job,
    the source's earlier init-container jobs, as a pod runs its init containers in order
    and stops at the first failure."""


@dataclass(frozen=True)
class Stage:
    trigger: Trigger
    units: tuple[Unit, ...]


def parse_trigger(text: str) -> Trigger:
    """`PostBuild`, case-insensitively (`postbuild`, `post-build` too)."""
    wanted = text.replace("-", "").replace("_", "").lower()
    for trigger in Trigger:
        if trigger.value.lower() == wanted:
            return trigger
    choices = ", ".join(t.value for t in Trigger)
    raise DevjobsError("--trigger", f"unknown trigger {text!r} (choose from {choices})")


def build_schedule(
    plan: JobPlan, *, trigger: Trigger | None = None, names: Sequence[str] = ()
) -> tuple[Stage, ...]:
    """The stages to run: every automatic point, just `trigger`, or just the named jobs
    (Manual ones included). Empty stages are left out."""
    if trigger is not None and names:
        raise DevjobsError("--trigger", "give either --trigger or job names, not both")
    if names:
        selected = _select(plan, names)
        stages = STAGE_ORDER
    else:
        selected = plan.jobs
        stages = (trigger,) if trigger is not None else LIFECYCLE_ORDER
    result = []
    for point in stages:
        units = tuple(unit_for(plan, job) for job in selected if job.trigger == point)
        if units:
            result.append(Stage(point, units))
    return tuple(result)


def unit_for(plan: JobPlan, job: JobConfig) -> Unit:
    """`job` with its setup steps and the init-container jobs that must precede it."""
    needs: tuple[Unit, ...] = ()
    if job.run_as == RunAs.INIT_CONTAINER:
        earlier = []
        for other in plan.jobs:
            if other.key == job.key:
                break
            if other.source == job.source and other.run_as == RunAs.INIT_CONTAINER:
                earlier.append(other)
        needs = tuple(unit_for(plan, other) for other in earlier[-1:])
    return Unit(job, setup_jobs(plan, job), needs)


def setup_jobs(plan: JobPlan, job: JobConfig) -> tuple[JobConfig, ...]:
    """The jobs named in `job.setup`, from the same source, in the order given."""
    return tuple(plan.setup_of(job))


def _select(plan: JobPlan, names: Sequence[str]) -> list[JobConfig]:
    """The jobs named `job` or `source/job`, in plan order, each once."""
    wanted: set[str] = set()
    for name in names:
        wanted.add(_find(plan, name).key)
    return [job for job in plan.jobs if job.key in wanted]


def _find(plan: JobPlan, name: str) -> JobConfig:
    if "/" in name:
        source, _, job_name = name.partition("/")
        matches = [j for j in plan.jobs if j.source == source and j.name == job_name]
    else:
        matches = [j for j in plan.jobs if j.name == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        choices = ", ".join(j.key for j in matches)
        raise DevjobsError(name, f"job name is ambiguous; use one of: {choices}")
    known = ", ".join(j.key for j in plan.jobs) or "none"
    raise DevjobsError(name, f"no such job in the plan (jobs: {known})")


def job_count(stages: Sequence[Stage]) -> int:
    return sum(len(stage.units) for stage in stages)
