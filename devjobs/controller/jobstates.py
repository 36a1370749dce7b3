"""The state of each of the current commit's jobs, as the controller sees it, for the
conditions (`kube.conditions.environment_conditions`, shared with `devjobs run`).

In a deployment mode devjobs does not follow, every lifecycle job is Failed, saying why.
A job whose point has not fired waits (for the builds, for the PreDeploy jobs and a
Ready workload); after a failed build or PreDeploy job it is Failed with that reason;
otherwise it is its Job's state, or its init containers' for an InitContainer job. The
newest Manual run of each job at this commit is reported too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from devjobs import catalyst
from devjobs.controller.initjobs import init_job_state
from devjobs.controller.observe import Observed
from devjobs.kube.conditions import EnvironmentJobs, reported_jobs
from devjobs.kube.jobs import JobObs, at_commit, newest
from devjobs.kube.jobstate import JobState, Phase, declared_state
from devjobs.kube.render import RenderedJob
from devjobs.kube.vocabulary import PREDEPLOY_GATE
from devjobs.resolver.models import JobConfig, JobPlan, RunAs, Trigger

WAITING_FOR = {
    Trigger.POST_BUILD: "the image builds",
    Trigger.PRE_DEPLOY: "the image builds",
    Trigger.POST_DEPLOY: "the PreDeploy jobs and a Ready workload",
}


@dataclass(frozen=True)
class Points:
    """What happened to the current commit's lifecycle points this round."""

    fired: Mapping[Trigger, bool]
    build_failed: bool
    pre_deploy_failed: bool
    render_errors: Mapping[Trigger, str]
    rendered: Mapping[Trigger, Sequence[RenderedJob]]
    workload_ready: bool
    held_pods: int = 0
    """New workload pods of the commit that devjobs' scheduling gate holds (`gates`)."""
    unsupported: str | None = None
    """Why no point fires in the Environment's mode (`catalyst.unsupported_mode`)."""


def lifecycle_state(
    job: JobConfig,
    points: Points,
    jobs_by_name: Mapping[str, JobObs],
    init_states: Mapping[str, JobState],
    workload: str,
) -> JobState:
    trigger = job.trigger

    def state(phase: Phase, reason: str, message: str) -> JobState:
        return declared_state(job.source, job.name, phase, reason, message)

    if points.unsupported is not None:
        *others, last = catalyst.SUPPORTED_MODES
        message = (
            f"devjobs runs lifecycle jobs only in Catalyst's {', '.join(others)} and {last} "
            f"modes; this Environment is in {points.unsupported}"
        )
        return state(Phase.FAILED, "UnsupportedMode", message)
    if trigger in points.render_errors:
        return state(Phase.FAILED, "RenderFailed", points.render_errors[trigger])
    if points.build_failed:
        return state(Phase.FAILED, "BuildFailed", "the image build failed")
    fired = points.fired.get(trigger, False)
    if trigger is Trigger.POST_DEPLOY and points.pre_deploy_failed and not fired:
        message = "a PreDeploy job failed"
        if points.held_pods:
            message += (
                f": {points.held_pods} new workload pod(s) held by the scheduling gate "
                f"{PREDEPLOY_GATE}, the previous ones keep serving"
            )
        return state(Phase.FAILED, "PreDeployFailed", message)
    if not fired:
        return state(Phase.PENDING, "Waiting", f"waiting for {WAITING_FOR[trigger]}")
    if job.run_as is RunAs.INIT_CONTAINER:
        return init_job_state(job, init_states, points.workload_ready, workload)
    name = next((r.name for r in points.rendered.get(trigger, ()) if r.key == job.key), None)
    seen = jobs_by_name.get(name) if name else None
    return seen.state if seen is not None else state(Phase.PENDING, "Pending", "creating the job")


def environment_jobs(
    observed: Observed,
    plan: JobPlan,
    current: Mapping[str, str],
    points: Points,
    init_states: Mapping[str, JobState],
) -> EnvironmentJobs:
    live = [j for j in observed.jobs if not j.deleting]
    by_name = {j.name: j for j in live}
    by_key = {j.key: j for j in plan.jobs}
    lifecycle = {
        key: lifecycle_state(by_key[key], points, by_name, init_states, observed.workload_name)
        for key in reported_jobs(plan)
    }
    manual_runs = [j for j in live if j.trigger == Trigger.MANUAL.value and at_commit(j, current)]
    manual = [run.state for _, run in sorted(newest(manual_runs).items())]
    tails: dict[str, str] = {}
    for state in [*lifecycle.values(), *manual]:
        kept = observed.log_tails.get(state.key)
        if kept is not None and state.job_name and kept.job_name == state.job_name:
            tails[state.key] = kept.main_log()
    return EnvironmentJobs(
        plan=plan,
        generation=observed.environment.generation,
        current=current,
        lifecycle=lifecycle,
        manual=manual,
        log_tails=tails,
    )
