"""The controller's decisions: `decide(observed, settings) -> Decision`, pure.

No client, no clock, no I/O: the same observation always gives the same actions, and the
actions are empty when the cluster already is as it should be (that is what keeps an idle
controller from writing). Per Environment and for its current commit, composed from one
module per concern:

- `lifecycle`: when `PostBuild`, `PreDeploy` and `PostDeploy` fire (never in a mode
  `catalyst.unsupported_mode` names: its lifecycle jobs are reported failed, saying why,
  and no pod is held);
- `gates`: which workload pods held by devjobs' scheduling gate may start (the commit's
  PreDeploy jobs succeeded);
- the Jobs of each fired point are rendered (`kube.render`) and created; `PreDeploy` also
  applies its `InitContainer` jobs to the workload (`kube.workload`);
- a Job of another commit (or a superseded spec) that has not finished is deleted and an
  Event says it was cancelled;
- `manual`: the `devjobs.dev/run` request;
- `jobstates` + `kube.conditions`: the conditions, written only when they change and
  only when nothing is being created or deleted this round (the Jobs' own events bring
  the next round, which writes the settled state once). A `Job.*` condition whose job is
  no longer in the current commit's plan is removed; only when the plan cannot be
  resolved are they kept, as Unknown/PlanFailed (then it is not known which still exist);
- `initjobs` + `reporting`: the log records to keep and the GitHub statuses to post, from
  what the cluster records as kept and posted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devjobs import catalyst
from devjobs.controller import checks, gates, initjobs, lifecycle, reporting
from devjobs.controller.actions import (
    ORDER,
    Action,
    ApplyWorkload,
    CreateJob,
    Decision,
    DeleteJob,
    RecordEvent,
    WriteConditions,
)
from devjobs.controller.jobstates import Points, environment_jobs
from devjobs.controller.manual import manual_actions
from devjobs.controller.observe import Observed
from devjobs.errors import DevjobsError
from devjobs.kube import naming
from devjobs.kube.conditions import (
    AGGREGATE_TYPE,
    commit_label,
    environment_conditions,
    is_devjobs_type,
    merge_conditions,
    short,
)
from devjobs.kube.jobs import at_commit
from devjobs.kube.jobstate import Phase
from devjobs.kube.podspec import RenderOptions, revisions
from devjobs.kube.render import RenderedJob, render
from devjobs.kube.workload import patch_needed, with_workload_label
from devjobs.resolver.models import LIFECYCLE_ORDER, Trigger

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""`now` for comparing conditions: only whether they change matters here."""


@dataclass(frozen=True)
class Settings:
    render: RenderOptions = field(default_factory=RenderOptions)
    """Images, git image, workload name, resources: as for `devjobs run`."""
    github: bool = False
    """Post GitHub commit statuses (a client is configured)."""
    checks: bool = False
    """Post GitHub check runs instead (a GitHub App is configured): `checks`."""
    ui_url: str | None = None
    """Check runs' `details_url` template (`checks.details_url`), else `target_url`."""
    target_url: str | None = None


def reconcile(observed: Observed, settings: Settings | None = None) -> list[Action]:
    """The actions that bring the cluster to what `observed` calls for (see module doc)."""
    return decide(observed, settings).actions


@dataclass
class _Rendered:
    """The Jobs and workload patch of the points that fired this round."""

    jobs: dict[str, RenderedJob] = field(default_factory=dict)
    by_trigger: dict[Trigger, list[RenderedJob]] = field(default_factory=dict)
    errors: dict[Trigger, str] = field(default_factory=dict)
    workload_patch: dict[str, Any] | None = None

    @property
    def workload_inits(self) -> list[dict[str, Any]]:
        if self.workload_patch is None:
            return []
        return list(self.workload_patch["spec"]["template"]["spec"].get("initContainers", []))


def _render_points(
    observed: Observed, options: RenderOptions, triggers: list[Trigger], into: _Rendered
) -> None:
    assert observed.plan is not None
    for trigger in triggers:
        try:
            result = render(
                observed.plan,
                observed.environment,
                dataclasses.replace(options, trigger=trigger, jobs=()),
            )
        except DevjobsError as error:
            into.errors[trigger] = str(error)
            continue
        into.by_trigger[trigger] = list(result.jobs)
        into.jobs.update({job.name: job for job in result.jobs})
        if result.workload_patch is not None:
            into.workload_patch = with_workload_label(
                result.workload_patch, observed.environment.name
            )


def decide(observed: Observed, settings: Settings | None = None) -> Decision:
    """`reconcile`'s actions, with what the InitContainer jobs' statuses came from."""
    settings = settings or Settings()
    env = observed.environment
    plan = observed.plan
    if plan is None:
        return Decision(_plan_failed(observed, observed.plan_error or "no plan"))
    current = revisions(plan, env)
    options = dataclasses.replace(
        settings.render, workload=observed.workload_name, runtime=observed.runtime
    )
    live = [j for j in observed.jobs if not j.deleting]
    lifecycle_triggers = {t.value for t in LIFECYCLE_ORDER}
    fired_by_jobs = {j.trigger for j in live if at_commit(j, current)} & lifecycle_triggers
    builds = lifecycle.builds_state(observed, current)
    # In a mode whose app devjobs cannot follow, no point fires and nothing is held.
    unsupported = catalyst.unsupported_mode(observed.mode)
    post_build = unsupported is None and lifecycle.post_build_fired(
        observed, current, builds, fired_by_jobs
    )
    workload_ready = lifecycle.workload_ready(observed, current)

    rendered = _Rendered()
    if post_build:
        _render_points(observed, options, [Trigger.POST_BUILD, Trigger.PRE_DEPLOY], rendered)
    by_name = {j.name: j for j in live}
    pre_states = [
        by_name[r.name].state if r.name in by_name else None
        for r in rendered.by_trigger.get(Trigger.PRE_DEPLOY, [])
    ]
    pre_failed = any(
        s is not None and s.phase in (Phase.FAILED, Phase.CANCELLED) for s in pre_states
    )
    pre_done = Trigger.PRE_DEPLOY in rendered.by_trigger and all(
        s is not None and s.phase is Phase.SUCCEEDED for s in pre_states
    )
    post_deploy = unsupported is None and (
        Trigger.POST_DEPLOY.value in fired_by_jobs or (post_build and pre_done and workload_ready)
    )
    if post_deploy:
        _render_points(observed, options, [Trigger.POST_DEPLOY], rendered)

    actions: list[Action] = []
    patch = rendered.workload_patch
    if patch is not None and observed.workload is not None:
        workload = observed.workload
        if patch_needed(patch, dict(workload.template_labels), workload.init_containers):
            actions.append(ApplyWorkload(patch))
    if unsupported is None:
        actions += gates.open_gates(
            observed, current, pre_deploy_done=post_build and pre_done,
            wanted_inits=rendered.workload_inits,
        )  # fmt: skip
    else:
        actions += gates.open_all(observed)
    actions += _cancellations(observed, current, rendered.jobs)
    existing = {j.name for j in observed.jobs}
    # A job that runs with the app's runtime context waits until there is a workload to
    # take it from (the operator may create the Deployment after the point fired).
    ready = observed.workload is not None
    actions += [
        CreateJob(name, job.manifest)
        for name, job in rendered.jobs.items()
        if name not in existing and (ready or not job.config.gets_runtime_context)
    ]
    actions += manual_actions(observed, plan, options, existing)
    actions += reporting.log_tail_actions(observed, current)

    wanted_inits = rendered.workload_inits
    if not any(isinstance(a, (CreateJob, DeleteJob)) for a in actions):
        points = Points(
            fired={
                Trigger.POST_BUILD: post_build,
                Trigger.PRE_DEPLOY: post_build,
                Trigger.POST_DEPLOY: post_deploy,
            },
            build_failed=builds is lifecycle.Builds.FAILED and not post_build,
            pre_deploy_failed=pre_failed,
            render_errors=rendered.errors,
            rendered=rendered.by_trigger,
            workload_ready=workload_ready,
            held_pods=gates.held(observed, current),
            unsupported=unsupported,
        )
        init_states = initjobs.init_container_states(observed, plan, wanted_inits)
        jobs = environment_jobs(observed, plan, current, points, init_states)
        actions += _condition_writes(observed, environment_conditions(jobs))
    statuses = initjobs.init_statuses(
        observed,
        plan,
        wanted_inits,
        applying=any(isinstance(a, ApplyWorkload) for a in actions),
        workload_ready=workload_ready,
    )
    cancelled = initjobs.init_cancelled(observed, plan, current)
    if settings.checks:
        urls = {"ui_url": settings.ui_url, "target_url": settings.target_url}
        actions += checks.check_run_actions(observed, statuses, **urls)
    elif settings.github:
        actions += reporting.status_actions(observed, statuses, cancelled)
    return Decision(sorted(actions, key=lambda a: ORDER.index(type(a))), statuses, cancelled)


def _cancellations(
    observed: Observed, current: Mapping[str, str], desired: Mapping[str, RenderedJob]
) -> list[Action]:
    """Delete what no longer belongs: another commit's, or a superseded spec's,
    unfinished Jobs (a Manual run of this commit stays), and say so in an Event."""
    env = observed.environment
    label = commit_label(current)
    actions: list[Action] = []
    for job in observed.jobs:
        if job.deleting or job.terminal or job.name in desired:
            continue
        now = at_commit(job, current)
        if job.trigger == Trigger.MANUAL.value and now:
            continue
        reason = "Superseded" if now else "NewCommit"
        actions.append(DeleteJob(job.name, job.key, job.commit, reason))
        why = f"{label} started" if reason == "NewCommit" else "its spec changed"
        actions.append(
            RecordEvent(
                name=naming.dns_label(env.name, "cancelled", suffix=naming.digest(job.name)),
                reason="Cancelled",
                message=f"{job.key} at commit {short(job.commit)} cancelled: {why}",
            )
        )
    return actions


def _condition_writes(observed: Observed, conditions: list[dict[str, Any]]) -> list[Action]:
    """A WriteConditions when something would change: a condition, or a `Job.*` type of
    a job the plan no longer has."""
    wanted_types = {c["type"] for c in conditions}
    remove = tuple(
        str(c.get("type"))
        for c in observed.conditions
        if str(c.get("type", "")).startswith("Job.") and c.get("type") not in wanted_types
    )
    if remove or merge_conditions(observed.conditions, conditions, now=_EPOCH) is not None:
        return [WriteConditions(tuple(conditions), remove)]
    return []


def _plan_failed(observed: Observed, error: str) -> list[Action]:
    """The plan cannot be resolved: say so, and stop showing any earlier commit's results."""
    generation = observed.environment.generation
    message = f"cannot resolve the jobs: {error}"[:1024]
    desired: list[dict[str, Any]] = [
        {
            "type": AGGREGATE_TYPE,
            "status": "False",
            "reason": "PlanFailed",
            "message": message,
            "observedGeneration": generation,
        }
    ]
    for cond in observed.conditions:
        ctype = str(cond.get("type", ""))
        if is_devjobs_type(ctype) and ctype != AGGREGATE_TYPE:
            desired.append(
                {
                    "type": ctype,
                    "status": "Unknown",
                    "reason": "PlanFailed",
                    "message": "the plan of the current commit could not be resolved",
                    "observedGeneration": generation,
                }
            )
    if merge_conditions(observed.conditions, desired, now=_EPOCH) is None:
        return []
    return [WriteConditions(tuple(desired))]
