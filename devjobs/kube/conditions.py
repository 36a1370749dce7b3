"""Job states as `metav1.Condition`s on the Environment, and merging them by type.

Public API:
    condition_type(source, job) -> str           "Job.<source>.<job>", valid or DevjobsError
    job_condition(state, *, generation, log_tail="") -> dict
    aggregate_condition(states, *, generation) -> dict     type `JobsSucceeded`
    merge_conditions(existing, desired, *, now) -> list[dict] | None
    environment_conditions(jobs: EnvironmentJobs) -> list[dict]
                         every condition devjobs keeps on an Environment, from its jobs
    AGGREGATE_TYPE, PRE_DEPLOY_GATE, MAX_MESSAGE_BYTES, is_devjobs_type(type)

`environment_conditions` is the one definition of what the conditions say: `devjobs run`
and the controller both call it, so `JobsSucceeded` and `PreDeployJobsSucceeded` mean the
same whoever writes them: every job of the current commit's plan (those not run yet are
Pending) at its newest run at that commit (a Manual re-run counts once it is the newer),
plus the newest Manual run of each Manual job.

Pure and deterministic: the controller calls these on every reconcile and writes only
when `merge_conditions` says something changed, because every write to the Environment
wakes Catalyst's operator (it reconciles on any change).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from devjobs.errors import DevjobsError
from devjobs.kube.jobstate import JobState, Phase, declared_state
from devjobs.resolver.models import JobPlan, RunAs, Trigger

AGGREGATE_TYPE = "JobsSucceeded"
PRE_DEPLOY_GATE = "PreDeployJobsSucceeded"
"""Aggregate of the current commit's PreDeploy Jobs: what a deploy waits for."""
TYPE_PREFIX = "Job."
MAX_TYPE_LENGTH = 316
MAX_MESSAGE_BYTES = 1024
"""The API allows 32 KiB; conditions are read by humans in `kubectl describe`, and the
full log tail lives in the log store."""

TYPE_PATTERN = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
"""metav1.Condition `type`, as validated by the API server (Catalyst's CRD schema)."""
REASON_PATTERN = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")

_STATUS = {
    Phase.SUCCEEDED: "True",
    Phase.FAILED: "False",
    Phase.CANCELLED: "False",
    Phase.PENDING: "Unknown",
    Phase.RUNNING: "Unknown",
}
_COMPARED = ("type", "status", "reason", "message", "observedGeneration")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def condition_type(source: str, job: str) -> str:
    """`Job.<source>.<job>`. Names from the resolver are RFC 1123 labels and always fit;
    anything else is refused here rather than by the API server mid-write."""
    ctype = f"{TYPE_PREFIX}{source}.{job}"
    if not source or not job or "/" in source or "/" in job:
        raise DevjobsError(
            f"job {source}/{job}", "source and job names must be non-empty and contain no '/'"
        )
    if len(ctype) > MAX_TYPE_LENGTH or not TYPE_PATTERN.fullmatch(ctype):
        raise DevjobsError(
            f"job {source}/{job}",
            f"{ctype!r} is not a valid condition type (letters, digits, '-', '_', '.', "
            f"starting and ending alphanumeric, at most {MAX_TYPE_LENGTH} characters)",
        )
    return ctype


def is_devjobs_type(ctype: str) -> bool:
    """Whether a condition type is one devjobs writes (and so may rewrite)."""
    return ctype == AGGREGATE_TYPE or ctype.startswith(TYPE_PREFIX)


def job_condition(state: JobState, *, generation: int, log_tail: str = "") -> dict[str, Any]:
    """The condition for one job: status from the phase, the summary, then as many of the
    last output lines as fit in MAX_MESSAGE_BYTES. `lastTransitionTime` is when the job
    finished (or started) when known; `merge_conditions` keeps the existing one when the
    status did not change and uses `now` when there is none."""
    reason = state.reason if REASON_PATTERN.fullmatch(state.reason or "") else state.phase.value
    summary = state.message
    if state.exit_code is not None and f"code {state.exit_code}" not in summary:
        summary = (
            f"exit code {state.exit_code}: {summary}" if summary else f"exit code {state.exit_code}"
        )
    cond: dict[str, Any] = {
        "type": condition_type(state.source, state.job),
        "status": _STATUS[state.phase],
        "reason": reason,
        "message": bounded_message(summary, log_tail),
        "observedGeneration": max(0, generation),
    }
    when = state.finished if state.phase.finished else state.started
    if when is not None:
        cond["lastTransitionTime"] = rfc3339(when)
    return cond


def aggregate_condition(states: Sequence[JobState], *, generation: int) -> dict[str, Any]:
    """`JobsSucceeded`: True when every job succeeded, False as soon as any failed or was
    cancelled (the environment cannot become fully green without a new run), else Unknown."""
    by_phase: dict[Phase, list[str]] = {phase: [] for phase in Phase}
    for state in states:
        by_phase[state.phase].append(state.key)
    failed, cancelled = by_phase[Phase.FAILED], by_phase[Phase.CANCELLED]
    if not states:
        status, reason = "True", "NoJobs"
    elif failed or cancelled:
        status, reason = "False", "Failed" if failed else "Cancelled"
    elif by_phase[Phase.RUNNING] or by_phase[Phase.PENDING]:
        status, reason = "Unknown", "Running" if by_phase[Phase.RUNNING] else "Pending"
    else:
        status, reason = "True", "Succeeded"
    parts = [f"{len(by_phase[Phase.SUCCEEDED])} of {len(states)} jobs succeeded"]
    for phase, keys in ((Phase.FAILED, failed), (Phase.CANCELLED, cancelled)):
        if keys:
            parts.append(f"{phase.value.lower()}: {', '.join(sorted(keys))}")
    for phase in (Phase.RUNNING, Phase.PENDING):
        if by_phase[phase]:
            parts.append(f"{len(by_phase[phase])} {phase.value.lower()}")
    return {
        "type": AGGREGATE_TYPE,
        "status": status,
        "reason": reason,
        "message": _truncate_bytes("; ".join(parts), MAX_MESSAGE_BYTES),
        "observedGeneration": max(0, generation),
    }


def short(revision: str) -> str:
    """A commit as people quote it (7 characters); a branch as it is."""
    return revision[:7] if is_sha(revision) else revision


def is_sha(text: str) -> bool:
    return len(text) >= 7 and all(c in "0123456789abcdef" for c in text.lower())


def commit_label(current: Mapping[str, str]) -> str:
    """`commit abc1234`, or `commits app@abc1234, api@def5678` for several sources."""
    values = {short(v) for v in current.values() if v}
    if len(values) <= 1:
        return f"commit {next(iter(values), 'unknown')}"
    return "commits " + ", ".join(f"{k}@{short(v)}" for k, v in sorted(current.items()) if v)


def reported_jobs(plan: JobPlan) -> list[str]:
    """Keys of the plan's jobs that get a condition at every commit: all but Manual jobs
    and the setup steps that run only as steps of other Jobs."""
    setup = {f"{job.source}/{step}" for job in plan.jobs for step in job.setup}
    return [
        job.key
        for job in plan.jobs
        if job.trigger is not Trigger.MANUAL and not (job.key in setup and job.run_as is RunAs.JOB)
    ]


@dataclass(frozen=True)
class EnvironmentJobs:
    """What an Environment's conditions are made from."""

    plan: JobPlan
    generation: int
    current: Mapping[str, str]
    """Source -> the revision its jobs run at now (`podspec.revisions`)."""
    lifecycle: Mapping[str, JobState]
    """Job key -> state, for each of `reported_jobs(plan)`; a missing one is Pending."""
    manual: Sequence[JobState] = ()
    """The newest Manual run of each job at the current commit; for a reported job it
    counts when it is newer than the lifecycle run (`newer`)."""
    log_tails: Mapping[str, str] = field(default_factory=dict)
    """Job key -> the tail of its finished run's own containers, for the message."""


def environment_conditions(jobs: EnvironmentJobs) -> list[dict[str, Any]]:
    """`Job.<source>.<job>` for each reported job and Manual run, then `JobsSucceeded`
    over all of them and `PreDeployJobsSucceeded` over the PreDeploy Jobs; every
    message starts with the commit it is about."""
    label = commit_label(jobs.current)
    by_key = {job.key: job for job in jobs.plan.jobs}
    manual = {state.key: state for state in jobs.manual}
    states: list[JobState] = []
    gate: list[JobState] = []
    for key in reported_jobs(jobs.plan):
        job = by_key[key]
        state = jobs.lifecycle.get(key) or not_run(job.source, job.name, label)
        rerun = manual.pop(key, None)
        if rerun is not None and newer(rerun, state):
            state = rerun
        states.append(state)
        if job.trigger is Trigger.PRE_DEPLOY and job.run_as is RunAs.JOB:
            gate.append(state)
    states += [manual[key] for key in sorted(manual)]
    conditions = [
        job_condition(
            replace(state, message=f"{label}: {state.message}"),
            generation=jobs.generation,
            log_tail=jobs.log_tails.get(state.key, "") if state.phase.finished else "",
        )
        for state in states
    ]
    aggregate = aggregate_condition(states, generation=jobs.generation)
    aggregate["message"] = f"{label}: {aggregate['message']}"[:MAX_MESSAGE_BYTES]
    pre_deploy = aggregate_condition(gate, generation=jobs.generation)
    pre_deploy["type"] = PRE_DEPLOY_GATE
    pre_deploy["message"] = f"{label}: {pre_deploy['message']}"[:MAX_MESSAGE_BYTES]
    return [*conditions, aggregate, pre_deploy]


def newer(rerun: JobState, run: JobState) -> bool:
    """Whether a Manual run of a lifecycle job is the job's newest run at the commit: it
    started after the lifecycle run did, or that one has not started (the Rerun of a
    finished job, by a user or GitHub, is what the job now stands at)."""
    if run.started is None:
        return True
    return rerun.started is not None and rerun.started >= run.started


def not_run(source: str, job: str, label: str) -> JobState:
    """A job with no run at the current commit (`label`: `commit abc1234`)."""
    message = f"not run at this {label.split()[0]}"
    return declared_state(source, job, Phase.PENDING, "Waiting", message)


def merge_conditions(
    existing: Sequence[Mapping[str, Any]],
    desired: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
) -> list[dict[str, Any]] | None:
    """The full condition list with `desired` merged in by type, or None when nothing
    would change. Types not in `desired` are returned untouched and in place (they belong
    to Catalyst or others); new types are appended. `lastTransitionTime` is kept while a
    condition's status stays the same, as metav1 defines it."""
    seen: set[str] = set()
    for cond in desired:
        ctype = str(cond.get("type", ""))
        if ctype in seen:
            raise DevjobsError("conditions", f"condition type {ctype!r} given twice")
        seen.add(ctype)
    wanted = {str(c["type"]): c for c in desired}
    result: list[dict[str, Any]] = []
    changed = False
    for cond in existing:
        ctype = str(cond.get("type", ""))
        new = wanted.pop(ctype, None)
        if new is None or all(cond.get(k) == new.get(k) for k in _COMPARED):
            result.append(dict(cond))
            continue
        merged = {k: v for k, v in new.items() if k in _COMPARED}
        if cond.get("status") == new.get("status") and cond.get("lastTransitionTime"):
            merged["lastTransitionTime"] = cond["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = new.get("lastTransitionTime") or rfc3339(now)
        result.append(merged)
        changed = True
    for new in wanted.values():
        merged = {k: v for k, v in new.items() if k in _COMPARED}
        merged["lastTransitionTime"] = new.get("lastTransitionTime") or rfc3339(now)
        result.append(merged)
        changed = True
    return result if changed else None


def rfc3339(when: datetime) -> str:
    """Second precision, UTC, `Z`: the form the API server itself writes for metav1.Time,
    so a value read back compares equal to the one written."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bounded_message(summary: str, log_tail: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`summary` (at most half the budget), then the last lines of `log_tail` that fit,
    whole lines preferred; the result is at most `limit` UTF-8 bytes."""
    head = _truncate_bytes(_clean(summary).replace("\n", " ").strip(), limit // 2)
    lines = [line for line in _clean(log_tail).split("\n") if line.strip()]
    if not lines:
        return head
    budget = limit - len(head.encode()) - 1  # the newline after the summary
    kept: list[str] = []
    for line in reversed(lines):
        size = len(line.encode()) + 1
        if size <= budget:
            kept.append(line)
            budget -= size
            continue
        if not kept and budget > 4:
            kept.append("…" + _tail_bytes(line, budget - 1 - len("…".encode())))
        break
    kept.reverse()
    text = "\n".join([head, *kept]) if head else "\n".join(kept)
    return _truncate_bytes(text, limit)


def _clean(text: str) -> str:
    """Log text as a terminal would show it: escape sequences dropped, the last `\\r`
    segment of each line kept (progress bars), other control characters removed."""
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return _CONTROL.sub("", "\n".join(lines))


def _truncate_bytes(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[: max(0, limit - len("…".encode()))].decode(errors="ignore")
    return cut + "…"


def _tail_bytes(text: str, limit: int) -> str:
    data = text.encode()
    return data[max(0, len(data) - limit) :].decode(errors="ignore")
