"""The controller's decisions: `reconcile(observed, settings) -> actions`, pure.

No client, no clock, no I/O: the same observation always gives the same actions, and the
actions are empty when the cluster already is as it should be (that is what keeps an idle
controller from writing). The rules, per Environment and for its current commit:

- `PostBuild` fires when the Project template's builds (Catalyst's Jobs
  `build-<build>-<sha7>`) have all succeeded for this commit; with no builds, when the
  Environment has left provisioning. Never from `status.phase` alone: Catalyst stays
  `Ready` while it rebuilds a new commit. Once devjobs' Jobs exist for this commit the
  point has fired (build Jobs may be garbage-collected; a restart must not forget).
- `PreDeploy` fires with `PostBuild`: its Jobs are created, its `InitContainer` jobs are
  applied to the workload, and `PreDeployJobsSucceeded` reports the gate.
- `PostDeploy` fires when the workload is Ready for this commit and the PreDeploy Jobs
  succeeded.
- `Manual`: the `devjobs.dev/run` annotation; the Jobs are created, then the request is
  cleared. A request's Jobs carry its id, so a restart in between creates nothing twice.
- A Job of another commit (or a superseded spec) that has not finished is deleted and an
  Event says it was cancelled. Conditions describe the current commit only.
- `runAs: InitContainer` jobs report from the workload's pods (labelled
  `devjobs.dev/workload` with the init containers): False/Failed when their init
  container failed in a pod whose devjobs init containers are the current ones, True
  when all of theirs exited 0 (or the workload is Ready at this commit).
- A `Job.*` condition whose job is no longer in the current commit's plan is removed
  (`WriteConditions.remove`), not kept as Unknown: the plan is the Environment's list of
  jobs, and a type nobody will update again would sit there forever (200 Environments x
  every renamed job). Only when the plan cannot be resolved are they kept, as
  Unknown/PlanFailed: then it is not known which of them still exist.
- Finished Jobs' logs are kept (`SaveLogTail`, once per Job: the kept ConfigMap names
  it) and their tail goes into the job's condition message, as `devjobs run` does.
- GitHub commit statuses of `runAs: InitContainer` jobs (`Decision.init_statuses`, posted
  by `report.Reporting`): from the moment the workload patch carrying the job is applied
  for the current commit (this round, or already in the workload), `pending` until its
  init container's result, then that result, as `devjobs run` posts them. A round that
  applies the patch is `pending` whatever the old template's rollout says. When the
  Environment moves to another commit while such a job's last posted status is still
  `pending` (recorded on the workload), that commit gets `error`, "superseded", as an
  unfinished Job of an old commit does (`Decision.init_cancelled`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devjobs.controller.observe import (
    PROVISIONING_PHASES,
    REQUEST_ANNOTATION,
    WORKLOAD_LABEL,
    BuildObs,
    JobObs,
    Observed,
    environment_label,
)
from devjobs.errors import DevjobsError
from devjobs.kube import naming
from devjobs.kube.conditions import (
    AGGREGATE_TYPE,
    aggregate_condition,
    condition_type,
    is_devjobs_type,
    job_condition,
    merge_conditions,
)
from devjobs.kube.jobstate import InitJob, JobState, Phase, spec_subset
from devjobs.kube.jobstate import init_container_states as shared_init_states
from devjobs.kube.render import (
    RenderedJob,
    RenderOptions,
    find_job,
    render,
    revision_of,
    setup_step_keys,
)
from devjobs.kube.workload import init_jobs
from devjobs.resolver.environment import Environment
from devjobs.resolver.models import LIFECYCLE_ORDER, JobConfig, JobPlan, RunAs, Trigger

PRE_DEPLOY_GATE = "PreDeployJobsSucceeded"
"""Aggregate of the current commit's PreDeploy Jobs: what a deploy should wait for."""
DEVJOBS_INIT_PREFIX = "devjobs-"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- actions ------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateJob:
    name: str
    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class DeleteJob:
    name: str
    key: str
    commit: str
    reason: str
    """`NewCommit` or `Superseded`."""


@dataclass(frozen=True)
class ApplyWorkload:
    patch: Mapping[str, Any]


@dataclass(frozen=True)
class WriteConditions:
    conditions: tuple[Mapping[str, Any], ...]
    remove: tuple[str, ...] = ()
    """devjobs' condition types to drop: jobs no longer in the current commit's plan."""


@dataclass(frozen=True)
class SaveLogTail:
    """Keep the logs of a finished Job's pod (one ConfigMap per job key, owned by the
    Environment), so they outlive the Job and its pods."""

    job_name: str
    key: str
    pod: str


@dataclass(frozen=True)
class ClearManualRequest:
    value: str
    """Cleared only while the annotation still holds this value (a newer request stays)."""


@dataclass(frozen=True)
class RecordEvent:
    name: str
    """Deterministic: recording the same fact twice is one Event."""
    reason: str
    message: str
    type: str = "Normal"


Action = (
    CreateJob
    | DeleteJob
    | ApplyWorkload
    | SaveLogTail
    | WriteConditions
    | ClearManualRequest
    | RecordEvent
)


@dataclass(frozen=True)
class Decision:
    """One round's result: the actions, and what the reporting posts besides them."""

    actions: list[Action]
    init_statuses: Mapping[str, JobState] = field(default_factory=dict)
    """Job key -> state (with its commit) of each InitContainer job of the current commit
    whose workload patch is applied, once this round's actions have run: the commit
    statuses to post for jobs that have no Job (see the module doc)."""
    init_cancelled: tuple[JobState, ...] = ()
    """Cancelled states, at their old commit, of InitContainer jobs whose last posted
    status is `pending` at a commit the Environment has left: posted before
    `init_statuses` (which then replace the record on the workload)."""


@dataclass(frozen=True)
class Settings:
    render: RenderOptions = field(default_factory=RenderOptions)
    """Images, git image, workload name, resources: as for `devjobs run`."""


# --- helpers ------------------------------------------------------------------------


def revisions(plan: JobPlan, env: Environment) -> dict[str, str]:
    """Source -> the revision its jobs run at now (the Environment's pin, else the plan's)."""
    names = [s.name for s in plan.sources] + [s.name for s in env.sources]
    return {name: revision_of(plan, env, name) for name in dict.fromkeys(names)}


def short(revision: str) -> str:
    return revision[:7] if _is_sha(revision) else revision


def commit_label(current: Mapping[str, str]) -> str:
    """`commit abc1234`, or `commits app@abc1234, api@def5678` for several sources."""
    values = {short(v) for v in current.values() if v}
    if len(values) <= 1:
        return f"commit {next(iter(values), 'unknown')}"
    return "commits " + ", ".join(f"{k}@{short(v)}" for k, v in sorted(current.items()) if v)


def _is_sha(text: str) -> bool:
    return len(text) >= 7 and all(c in "0123456789abcdef" for c in text.lower())


def builds_state(observed: Observed, current: Mapping[str, str]) -> str:
    """`done`, `failed` or `waiting`: the image builds of the current commit."""
    shas = {v[:7] for v in current.values() if _is_sha(v)}
    pinned = bool(shas) and all(_is_sha(v) for v in current.values() if v)

    def at_commit(build: BuildObs) -> bool:
        return any(build.name.endswith(f"-{sha}") for sha in shas)

    relevant: dict[str, list[BuildObs]] = {}
    for build in observed.builds:
        name = build.build or build.name
        if pinned and not at_commit(build):
            continue
        relevant.setdefault(name, []).append(build)
    if not pinned:
        # Only a branch: the newest build of each kind is this commit's.
        relevant = {k: [max(v, key=lambda b: (b.created, b.name))] for k, v in relevant.items()}
    wanted = list(observed.expected_builds) or sorted(relevant)
    if not wanted:
        return "waiting" if observed.phase in PROVISIONING_PHASES else "done"
    states = []
    for name in wanted:
        found = relevant.get(name, [])
        if any(b.succeeded for b in found):
            states.append("done")
        elif found and all(b.failed for b in found):
            states.append("failed")
        else:
            states.append("waiting")
    if "failed" in states:
        return "failed"
    return "done" if all(s == "done" for s in states) else "waiting"


def workload_at_commit(observed: Observed, current: Mapping[str, str]) -> bool | None:
    """Whether the workload runs the current commit: True/False when it says so (devjobs'
    clone init containers carry the revision; Catalyst's images are tagged with the
    commit), None when nothing in it names a commit."""
    workload = observed.workload
    if workload is None:
        return False
    wanted = {v for v in current.values() if v}
    if workload.revisions:
        return all(r in wanted for r in workload.revisions)
    tags = [image.rsplit(":", 1)[1] for image in workload.images if ":" in image.split("/")[-1]]
    tags = [t for t in tags if _is_sha(t)]
    if tags:
        return any(v.startswith(t) or t == v for t in tags for v in wanted)
    return None


def with_workload_label(patch: Mapping[str, Any], env: Environment) -> dict[str, Any]:
    """The runner's workload patch plus `WORKLOAD_LABEL` on the pod template when it adds
    init containers, so the controller can watch the pods that run them (and only those)."""
    result = dict(patch)
    spec = dict(patch["spec"])
    template = dict(spec["template"])
    if template["spec"].get("initContainers"):
        meta = dict(template.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), WORKLOAD_LABEL: environment_label(env.name)}
        template["metadata"] = meta
    spec["template"] = template
    result["spec"] = spec
    return result


def workload_patch_needed(observed: Observed, patch: Mapping[str, Any]) -> bool:
    workload = observed.workload
    if workload is None:
        return False  # nothing to add init containers to yet; applying would create it
    labels = (patch["spec"]["template"].get("metadata") or {}).get("labels") or {}
    have_labels = dict(workload.template_labels)
    if any(have_labels.get(k) != v for k, v in labels.items()):
        return True
    if WORKLOAD_LABEL in have_labels and WORKLOAD_LABEL not in labels:
        return True
    wanted = patch["spec"]["template"]["spec"].get("initContainers", [])
    have = {name: json.loads(text) for name, text in workload.init_containers}
    ours = {n for n in have if n.startswith(DEVJOBS_INIT_PREFIX)}
    if ours - {c["name"] for c in wanted}:
        return True
    # Order matters for init containers: ours must be in the order we applied them.
    order = [n for n, _ in workload.init_containers if n in {c["name"] for c in wanted}]
    if order != [c["name"] for c in wanted]:
        return True
    return not all(spec_subset(c, have[c["name"]]) for c in wanted)


def _state(
    job: JobConfig, phase: Phase, reason: str, message: str, commit: str | None = None
) -> JobState:
    return JobState(
        source=job.source,
        job=job.name,
        phase=phase,
        reason=reason,
        exit_code=None,
        started=None,
        finished=None,
        message=message,
        commit=commit,
        job_name=None,
    )


def _attempt(request_id: str) -> int:
    return int(request_id[:7], 16) + 1


def init_container_states(
    observed: Observed, plan: JobPlan, wanted: Sequence[Mapping[str, Any]]
) -> dict[str, JobState]:
    """Job key -> state of each InitContainer job whose containers already ran in a
    workload pod with the current spec (`kube.jobstate.init_container_states`, the
    reading `devjobs run --trigger PreDeploy` shares). Jobs with no such run are left out
    (Waiting)."""
    workload = observed.workload
    if workload is None:
        return {}
    return shared_init_states(init_jobs(plan), workload.init_runs, wanted, observed.workload_name)


def init_job_state(
    job: JobConfig, init_states: Mapping[str, JobState], workload_ready: bool, workload: str
) -> JobState:
    """An InitContainer job's state once its workload patch is applied: its init
    container's result, else Succeeded when the workload is Ready (its rollout ran the
    containers), else Pending. The condition and the commit status both say this."""
    if job.key in init_states:
        return init_states[job.key]
    if workload_ready:
        return _state(job, Phase.SUCCEEDED, "Succeeded", f"ran as an init container of {workload}")
    return _state(job, Phase.PENDING, "Waiting", f"runs as an init container of {workload}")


def _init_statuses(
    observed: Observed,
    plan: JobPlan,
    wanted: Sequence[Mapping[str, Any]],
    *,
    applying: bool,
    workload_ready: bool,
) -> dict[str, JobState]:
    """`Decision.init_statuses`: the InitContainer jobs whose containers are in the
    workload patch (`wanted`, rendered for a fired PreDeploy) and so in the workload once
    this round has run. `applying`: this round applies the patch, so the workload's
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


def _init_cancelled(
    observed: Observed, plan: JobPlan, current: Mapping[str, str]
) -> tuple[JobState, ...]:
    """`Decision.init_cancelled`: read from the posted states the workload records. Only
    jobs still in the plan: a record is named after its job, and the name of a job the
    plan dropped cannot be read back from it."""
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
            cancelled.append(_state(job, Phase.CANCELLED, "Superseded", message, commit))
    return tuple(cancelled)


# --- reconcile ----------------------------------------------------------------------


def reconcile(observed: Observed, settings: Settings | None = None) -> list[Action]:
    """The actions that bring the cluster to what `observed` calls for (see module doc)."""
    return decide(observed, settings).actions


def decide(observed: Observed, settings: Settings | None = None) -> Decision:
    """`reconcile`'s actions, with the InitContainer jobs' commit statuses."""
    settings = settings or Settings()
    env = observed.environment
    plan = observed.plan
    if plan is None:
        return Decision(_plan_failed(observed, observed.plan_error or "no plan"))
    current = revisions(plan, env)
    label = commit_label(current)
    options = dataclasses.replace(settings.render, workload=observed.workload_name)

    def at_current(job: JobObs) -> bool:
        source = job.key.partition("/")[0]
        return bool(job.commit) and current.get(source) == job.commit

    live = [j for j in observed.jobs if not j.deleting]
    fired_by_jobs = {j.trigger for j in live if at_current(j)}
    builds = builds_state(observed, current)
    at_commit = workload_at_commit(observed, current)
    post_build = (
        builds == "done"
        or bool(fired_by_jobs & {t.value for t in LIFECYCLE_ORDER})
        or (bool(at_commit) and observed.workload is not None and observed.workload.ready)
    )
    build_failed = builds == "failed" and not post_build

    actions: list[Action] = []
    desired: dict[str, RenderedJob] = {}
    render_errors: dict[Trigger, str] = {}
    rendered_at: dict[Trigger, list[RenderedJob]] = {}
    workload_inits: list[Mapping[str, Any]] = []

    def render_point(trigger: Trigger) -> None:
        try:
            result = render(plan, env, dataclasses.replace(options, trigger=trigger, jobs=()))
        except DevjobsError as error:
            render_errors[trigger] = str(error)
            return
        rendered_at[trigger] = list(result.jobs)
        for job in result.jobs:
            desired[job.name] = job
        if result.workload_patch is not None:
            patch = with_workload_label(result.workload_patch, env)
            workload_inits.extend(patch["spec"]["template"]["spec"].get("initContainers", []))
            if workload_patch_needed(observed, patch):
                actions.append(ApplyWorkload(patch))

    if post_build:
        render_point(Trigger.POST_BUILD)
        render_point(Trigger.PRE_DEPLOY)

    by_name = {j.name: j for j in live}
    pre_states = [
        by_name[r.name].state if r.name in by_name else None
        for r in rendered_at.get(Trigger.PRE_DEPLOY, [])
    ]
    pre_failed = any(
        s is not None and s.phase in (Phase.FAILED, Phase.CANCELLED) for s in pre_states
    )
    pre_done = Trigger.PRE_DEPLOY in rendered_at and all(
        s is not None and s.phase is Phase.SUCCEEDED for s in pre_states
    )
    workload_ready = observed.workload is not None and observed.workload.ready
    post_deploy = Trigger.POST_DEPLOY.value in fired_by_jobs or (
        post_build and pre_done and workload_ready and at_commit is not False
    )
    if post_deploy:
        render_point(Trigger.POST_DEPLOY)

    # Cancel what no longer belongs: another commit's, or a superseded spec's, unfinished Jobs.
    for job in live:
        if job.terminal or job.name in desired:
            continue
        if job.trigger == Trigger.MANUAL.value and at_current(job):
            continue
        reason = "Superseded" if at_current(job) else "NewCommit"
        actions.append(DeleteJob(job.name, job.key, job.commit, reason))
        actions.append(
            RecordEvent(
                name=naming.dns_label(env.name, "cancelled", suffix=naming.digest(job.name)),
                reason="Cancelled",
                message=(
                    f"{job.key} at commit {short(job.commit)} cancelled: "
                    + (f"{label} started" if reason == "NewCommit" else "its spec changed")
                ),
            )
        )

    existing = {j.name for j in observed.jobs}
    for name, rendered in desired.items():
        if name not in existing:
            actions.append(CreateJob(name, rendered.manifest))

    manual_actions = _manual(observed, plan, options, existing)
    actions += manual_actions
    actions += _log_tails(observed, at_current)

    # Conditions only when nothing is being created or deleted this round: the Jobs'
    # own events bring the next round, which writes the settled state once.
    if not any(isinstance(a, (CreateJob, DeleteJob)) for a in actions):
        conditions = _conditions(
            observed,
            plan,
            label,
            post_build=post_build,
            build_failed=build_failed,
            post_deploy=post_deploy,
            pre_failed=pre_failed,
            workload_ready=workload_ready and at_commit is not False,
            rendered_at=rendered_at,
            render_errors=render_errors,
            by_name=by_name,
            at_current=at_current,
            init_states=init_container_states(observed, plan, workload_inits),
        )
        wanted_types = {c["type"] for c in conditions}
        remove = tuple(
            str(c.get("type"))
            for c in observed.conditions
            if str(c.get("type", "")).startswith("Job.") and c.get("type") not in wanted_types
        )
        if remove or merge_conditions(observed.conditions, conditions, now=_EPOCH) is not None:
            actions.append(WriteConditions(tuple(conditions), remove))
    order = (DeleteJob, ApplyWorkload, CreateJob, ClearManualRequest, SaveLogTail,
             WriteConditions, RecordEvent)  # fmt: skip
    statuses = _init_statuses(
        observed,
        plan,
        workload_inits,
        applying=any(isinstance(a, ApplyWorkload) for a in actions),
        workload_ready=workload_ready and at_commit is not False,
    )
    return Decision(
        sorted(actions, key=lambda a: order.index(type(a))),
        statuses,
        _init_cancelled(observed, plan, current),
    )


def newest_finished(observed: Observed, at_current: Any) -> dict[str, JobObs]:
    """Job key -> the newest finished Job of the current commit (lifecycle or Manual run)."""
    newest: dict[str, JobObs] = {}
    for job in observed.jobs:
        if job.deleting or not job.state.phase.finished or not at_current(job):
            continue
        known = newest.get(job.key)
        if known is None or (job.created, job.name) > (known.created, known.name):
            newest[job.key] = job
    return newest


def _log_tails(observed: Observed, at_current: Any) -> list[Action]:
    """Keep the logs of each job's newest finished run of this commit, once (the kept
    ConfigMap names the Job it came from); not when its pod is already gone."""
    actions: list[Action] = []
    for key, job in sorted(newest_finished(observed, at_current).items()):
        kept = observed.log_tails.get(key)
        if job.pod and (kept is None or kept.job_name != job.name):
            actions.append(SaveLogTail(job.name, key, job.pod))
    return actions


def main_log(observed: Observed, state: JobState) -> str:
    """The kept tail of the job's own container (not the clone's or a setup step's)."""
    kept = observed.log_tails.get(state.key)
    if kept is None or not state.job_name or kept.job_name != state.job_name:
        return ""
    own = [k for k in kept.logs if not k.startswith(DEVJOBS_INIT_PREFIX)]  # clone, setup
    return "\n".join(kept.logs[k] for k in own)


def _manual(
    observed: Observed, plan: JobPlan, options: RenderOptions, existing: set[str]
) -> list[Action]:
    request = observed.manual
    if request is None:
        return []
    env = observed.environment
    actions: list[Action] = []
    picked: list[str] = []
    problems: list[str] = []
    for wanted in request.jobs:
        try:
            job = find_job(plan, wanted)
        except DevjobsError as error:
            problems.append(str(error))
            continue
        if job.run_as is not RunAs.JOB:
            problems.append(f"{job.key}: runs as an init container of the workload")
            continue
        picked.append(job.key)
    if picked:
        attempts = {key: _attempt(request.request_id) for key in picked}
        rendered = render(
            plan, env, dataclasses.replace(options, jobs=tuple(picked), attempts=attempts)
        )
        for made in rendered.jobs:
            if made.name in existing:
                continue
            manifest = dict(made.manifest)
            metadata = dict(manifest["metadata"])
            metadata["annotations"] = {
                **metadata["annotations"],
                REQUEST_ANNOTATION: request.request_id,
            }
            manifest["metadata"] = metadata
            actions.append(CreateJob(made.name, manifest))
    if problems or not request.jobs:
        text = "; ".join(problems) or "the request names no job"
        actions.append(
            RecordEvent(
                name=naming.dns_label(env.name, "request", suffix=request.request_id[:10]),
                reason="InvalidRequest",
                message=f"{RUN_HINT}{request.value!r}: {text}",
                type="Warning",
            )
        )
    actions.append(ClearManualRequest(request.value))
    return actions


RUN_HINT = "devjobs.dev/run="


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


def _conditions(
    observed: Observed,
    plan: JobPlan,
    label: str,
    *,
    post_build: bool,
    build_failed: bool,
    post_deploy: bool,
    pre_failed: bool,
    workload_ready: bool,
    rendered_at: Mapping[Trigger, Sequence[RenderedJob]],
    render_errors: Mapping[Trigger, str],
    by_name: Mapping[str, JobObs],
    at_current: Any,
    init_states: Mapping[str, JobState],
) -> list[dict[str, Any]]:
    generation = observed.environment.generation
    setup = setup_step_keys(plan)
    rendered_name = {
        (r.key, trigger): r.name for trigger, jobs in rendered_at.items() for r in jobs
    }
    states: list[JobState] = []
    pre_deploy: list[JobState] = []
    fired = {
        Trigger.POST_BUILD: post_build,
        Trigger.PRE_DEPLOY: post_build,
        Trigger.POST_DEPLOY: post_deploy,
    }
    for job in plan.jobs:
        if job.trigger is Trigger.MANUAL or job.key in setup and job.run_as is RunAs.JOB:
            continue
        trigger = job.trigger
        if trigger in render_errors:
            state = _state(job, Phase.FAILED, "RenderFailed", render_errors[trigger])
        elif build_failed:
            state = _state(job, Phase.FAILED, "BuildFailed", "the image build failed")
        elif trigger is Trigger.POST_DEPLOY and pre_failed and not post_deploy:
            state = _state(job, Phase.FAILED, "PreDeployFailed", "a PreDeploy job failed")
        elif not fired[trigger]:
            waiting = {
                Trigger.POST_BUILD: "the image builds",
                Trigger.PRE_DEPLOY: "the image builds",
                Trigger.POST_DEPLOY: "the PreDeploy jobs and a Ready workload",
            }[trigger]
            state = _state(job, Phase.PENDING, "Waiting", f"waiting for {waiting}")
        elif job.run_as is RunAs.INIT_CONTAINER:
            state = init_job_state(job, init_states, workload_ready, observed.workload_name)
        else:
            name = rendered_name.get((job.key, trigger))
            seen = by_name.get(name) if name else None
            state = (
                seen.state
                if seen is not None
                else _state(job, Phase.PENDING, "Pending", "creating the job")
            )
        states.append(state)
        if trigger is Trigger.PRE_DEPLOY and job.run_as is RunAs.JOB:
            pre_deploy.append(state)
    # Manual runs of this commit: the newest per job.
    manual: dict[str, JobObs] = {}
    for seen in by_name.values():
        if seen.trigger != Trigger.MANUAL.value or not at_current(seen):
            continue
        newest = manual.get(seen.key)
        if newest is None or (seen.created, seen.name) > (newest.created, newest.name):
            manual[seen.key] = seen
    manual_states = [manual[k].state for k in sorted(manual)]
    lifecycle_keys = {(s.source, s.job) for s in states}
    states += [s for s in manual_states if (s.source, s.job) not in lifecycle_keys]
    conditions = [
        job_condition(
            dataclasses.replace(state, message=f"{label}: {state.message}"),
            generation=generation,
            log_tail=main_log(observed, state) if state.phase.finished else "",
        )
        for state in states
    ]
    aggregate = aggregate_condition(states, generation=generation)
    aggregate["message"] = f"{label}: {aggregate['message']}"[:1024]
    gate = aggregate_condition(pre_deploy, generation=generation)
    gate["type"] = PRE_DEPLOY_GATE
    gate["message"] = f"{label}: {gate['message']}"[:1024]
    return [*conditions, aggregate, gate]


__all__ = [
    "Action",
    "ApplyWorkload",
    "ClearManualRequest",
    "CreateJob",
    "Decision",
    "DeleteJob",
    "RecordEvent",
    "Settings",
    "WriteConditions",
    "condition_type",
    "decide",
    "reconcile",
]
