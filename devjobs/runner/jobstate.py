"""What a job's batch/v1 Job and its pods say about it, as one `JobState`.

Public API:
    Phase                      PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
    JobState                   frozen summary: phase, reason, exit code, times, message
    job_state(job, pods)       from the API JSON (dicts) of a Job and its pods
    FATAL_WAITING_REASONS      pod waiting reasons that can never recover by themselves

Pure and cheap: the controller calls it on every reconcile, so it reads only the dicts it
is given. Reasons are the condition reasons of the issue (`Pending`, `Running`,
`Succeeded`, `Failed`, `DeadlineExceeded`, `BackoffLimitExceeded`, `Cancelled`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LABEL_SOURCE = "devjobs.dev/source"
LABEL_JOB = "devjobs.dev/job"
ANNOTATION_COMMIT = "devjobs.dev/commit"

FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImageNeverPull",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
    }
)
"""A container stuck waiting for one of these will not start without a change to the
spec (or the image), so the job is reported Failed at once instead of at its deadline."""

_JOB_FAILED_REASONS = {
    "DeadlineExceeded": "DeadlineExceeded",
    "BackoffLimitExceeded": "BackoffLimitExceeded",
}
"""Job `Failed` condition reasons kept as they are; any other (PodFailurePolicy,
MaxFailedIndexesExceeded, ...) becomes `Failed` with the Job's message."""


class Phase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


@dataclass(frozen=True)
class JobState:
    """One job's outcome so far; `source`/`job` name it in conditions and statuses."""

    source: str
    job: str
    phase: Phase
    reason: str
    exit_code: int | None
    started: datetime | None
    finished: datetime | None
    message: str
    commit: str | None
    job_name: str | None

    @property
    def key(self) -> str:
        return f"{self.source}/{self.job}"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 API timestamp (`2024-05-01T10:00:00Z`) or None when absent/invalid."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def job_state(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobState:
    """Summarise a Job (API JSON) and its pods. Terminal Job conditions win over
    everything else: a Job that completed and is then garbage-collected still succeeded.
    """
    meta = _map(job.get("metadata"))
    labels = _map(meta.get("labels"))
    annotations = _map(meta.get("annotations"))
    status = _map(job.get("status"))
    ordered = sorted(pods, key=_pod_order)

    def make(
        phase: Phase, reason: str, message: str, exit_code: int | None, finished: datetime | None
    ) -> JobState:
        return JobState(
            source=str(labels.get(LABEL_SOURCE, "")),
            job=str(labels.get(LABEL_JOB, "")),
            phase=phase,
            reason=reason,
            exit_code=exit_code,
            started=parse_time(status.get("startTime")),
            finished=finished,
            message=message,
            commit=_str_or_none(annotations.get(ANNOTATION_COMMIT)),
            job_name=_str_or_none(meta.get("name")),
        )

    conditions = {
        c.get("type"): c
        for c in _list(status.get("conditions"))
        if isinstance(c, Mapping) and c.get("status") == "True"
    }
    done = conditions.get("Complete") or conditions.get("SuccessCriteriaMet")
    if done is not None:
        finished = parse_time(status.get("completionTime")) or parse_time(
            done.get("lastTransitionTime")
        )
        return make(Phase.SUCCEEDED, "Succeeded", "exit code 0", 0, finished)

    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed is not None:
        job_reason = str(failed.get("reason") or "")
        reason = _JOB_FAILED_REASONS.get(job_reason, "Failed")
        culprit = _failing_container(ordered)
        parts = [f"{job_reason}: {failed.get('message')}" if failed.get("message") else job_reason]
        if culprit is not None:
            parts.append(culprit[1])
        message = "; ".join(p for p in parts if p) or "job failed"
        finished = parse_time(failed.get("lastTransitionTime"))
        return make(Phase.FAILED, reason, message, culprit[0] if culprit else None, finished)

    deleted = parse_time(meta.get("deletionTimestamp"))
    if meta.get("deletionTimestamp"):
        return make(Phase.CANCELLED, "Cancelled", "job deleted before it finished", None, deleted)

    stuck = _fatal_waiting(ordered)
    if stuck is not None:
        return make(Phase.FAILED, "Failed", stuck, None, None)

    if any(_is_running(p) for p in ordered):
        retries = int(status.get("failed") or 0)
        note = f" (attempt {retries + 1})" if retries else ""
        return make(Phase.RUNNING, "Running", f"running{note}", None, None)

    if _map(job.get("spec")).get("suspend") is True:
        return make(Phase.PENDING, "Pending", "job is suspended", None, None)
    return make(Phase.PENDING, "Pending", _pending_detail(ordered), None, None)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _pod_order(pod: Mapping[str, Any]) -> tuple[str, str]:
    """Oldest attempt first (RFC 3339 UTC strings sort chronologically), then by name."""
    meta = _map(pod.get("metadata"))
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = _map(pod.get("status"))
    return [
        s
        for field in ("initContainerStatuses", "containerStatuses")
        for s in _list(status.get(field))
        if isinstance(s, Mapping)
    ]


def _failing_container(pods: Sequence[Mapping[str, Any]]) -> tuple[int, str] | None:
    """`(exit_code, description)` of the container that failed first in the latest pod
    that has one; a failure in a parallel sibling is usually a consequence, not a cause."""
    for pod in reversed(pods):
        failures: list[tuple[str, int, str]] = []
        for cs in _statuses(pod):
            for key in ("state", "lastState"):
                term = _map(_map(cs.get(key)).get("terminated"))
                code = term.get("exitCode")
                if isinstance(code, int) and code != 0:
                    detail = f"container {cs.get('name')} exited with code {code}"
                    if term.get("reason") and term.get("reason") != "Error":
                        detail += f" ({term.get('reason')})"
                    failures.append((str(term.get("finishedAt") or ""), code, detail))
                    break
        if failures:
            failures.sort(key=lambda f: f[0])
            return failures[0][1], failures[0][2]
    return None


def _fatal_waiting(pods: Sequence[Mapping[str, Any]]) -> str | None:
    for pod in reversed(pods):
        if _map(pod.get("metadata")).get("deletionTimestamp"):
            continue
        for cs in _statuses(pod):
            waiting = _map(_map(cs.get("state")).get("waiting"))
            reason = waiting.get("reason")
            if reason in FATAL_WAITING_REASONS:
                text = f"container {cs.get('name')}: {reason}"
                if waiting.get("message"):
                    text += f": {waiting.get('message')}"
                return text
    return None


def _is_running(pod: Mapping[str, Any]) -> bool:
    if _map(pod.get("status")).get("phase") == "Running":
        return True
    return any("running" in _map(cs.get("state")) for cs in _statuses(pod))


def _pending_detail(pods: Sequence[Mapping[str, Any]]) -> str:
    """Why nothing runs yet: the scheduler's or kubelet's word when there is one."""
    if not pods:
        return "waiting for a pod"
    pod = pods[-1]
    for cond in _list(_map(pod.get("status")).get("conditions")):
        if (
            isinstance(cond, Mapping)
            and cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
        ):
            return f"{cond.get('reason') or 'Unschedulable'}: {cond.get('message') or ''}".strip()
    for cs in _statuses(pod):
        waiting = _map(_map(cs.get("state")).get("waiting"))
        if waiting.get("reason"):
            return f"container {cs.get('name')}: {waiting.get('reason')}"
    return "pod pending"
