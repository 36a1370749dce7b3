"""What a job's batch/v1 Job and its pods say about it, as one `JobState`.

Public API:
    Phase                      PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
    JobState                   frozen summary: phase, reason, exit code, times, message
    job_state(job, pods)       from the API JSON (dicts) of a Job and its pods
    FATAL_WAITING_REASONS      pod waiting reasons that can never recover by themselves
    InitJob                    a `runAs: InitContainer` job and its containers' names
    InitContainerRun           one devjobs init container of one workload pod, as it went
    init_runs(pods, prefix)    those runs, from the workload's pods (API JSON)
    init_container_results(jobs, runs, wanted, workload) -> {key: InitResult}
    init_container_states(...)  the same, states only: the one reading of init
                               containers, shared by the controller and `devjobs run`

Pure and cheap: the controller calls it on every reconcile, so it reads only the dicts it
is given. Reasons are the condition reasons of the issue (`Pending`, `Running`,
`Succeeded`, `Failed`, `DeadlineExceeded`, `BackoffLimitExceeded`, `Cancelled`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devjobs.kube.vocabulary import ANNOTATION_COMMIT, LABEL_JOB, LABEL_SOURCE

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


def declared_state(
    source: str, job: str, phase: Phase, reason: str, message: str, commit: str | None = None
) -> JobState:
    """A state devjobs declares itself (waiting, blocked, cancelled): nothing ran, so no
    exit code, times or Job."""
    return JobState(
        source=source,
        job=job,
        phase=phase,
        reason=reason,
        exit_code=None,
        started=None,
        finished=None,
        message=message,
        commit=commit,
        job_name=None,
    )


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


# --- runAs: InitContainer jobs, read from the workload's pods ------------------------


@dataclass(frozen=True)
class InitJob:
    """A `runAs: InitContainer` job: the names its containers have in the workload (one,
    or one per `parallel` entry, in order) and the commit it runs at (for statuses)."""

    source: str
    job: str
    containers: tuple[str, ...]
    commit: str | None = None

    @property
    def key(self) -> str:
        return f"{self.source}/{self.job}"


@dataclass(frozen=True)
class InitContainerRun:
    """One devjobs init container of one workload pod: its spec and how it went."""

    pod: str
    name: str
    spec: str
    """Canonical JSON of the container as the pod runs it (to match the current spec)."""
    exit_code: int | None
    """Of the last run that ended: 0 done, else failed (restarts keep the last failure)."""
    waiting: str = ""
    """A fatal waiting reason (image pull errors) with its message, else ''."""

    @property
    def failed(self) -> bool:
        return bool(self.waiting) or (self.exit_code or 0) != 0


@dataclass(frozen=True)
class InitResult:
    state: JobState
    pod: str
    """The pod whose run decided it (where its logs are)."""
    container: str = ""
    """The init container that failed (its own or an earlier one), else ''."""


def init_runs(pods: Sequence[Mapping[str, Any]], prefix: str) -> tuple[InitContainerRun, ...]:
    """The init containers named `prefix*` of the (not deleting) pods, newest pod first."""
    runs: list[InitContainerRun] = []
    ordered = sorted(
        pods, key=lambda p: str(_map(p.get("metadata")).get("creationTimestamp") or ""),
        reverse=True,
    )  # fmt: skip
    for pod in ordered:
        meta = _map(pod.get("metadata"))
        if meta.get("deletionTimestamp"):
            continue
        specs = {
            str(_map(c).get("name")): _map(c)
            for c in _list(_map(pod.get("spec")).get("initContainers"))
        }
        statuses = {
            str(_map(s).get("name")): _map(s)
            for s in _list(_map(pod.get("status")).get("initContainerStatuses"))
        }
        for name, spec in specs.items():
            if not name.startswith(prefix):
                continue
            status = statuses.get(name, {})
            code: int | None = None
            for key in ("state", "lastState"):
                term = _map(_map(status.get(key)).get("terminated"))
                if isinstance(term.get("exitCode"), int):
                    code = int(term["exitCode"])
                    if code != 0 or key == "state":
                        break
            waiting = _map(_map(status.get("state")).get("waiting"))
            fatal = ""
            if waiting.get("reason") in FATAL_WAITING_REASONS:
                fatal = f"{waiting.get('reason')}: {waiting.get('message') or ''}".strip(": ")
            runs.append(
                InitContainerRun(
                    pod=str(meta.get("name", "")), name=name,
                    spec=json.dumps(spec, sort_keys=True), exit_code=code, waiting=fatal,
                )
            )  # fmt: skip
    return tuple(runs)


def spec_subset(want: Any, have: Any) -> bool:
    """`want` (what devjobs applies) is already in `have` (the object with server defaults)."""
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            spec_subset(v, have.get(k)) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(spec_subset(w, h) for w, h in zip(want, have, strict=True))
        )
    return bool(want == have)


_IDENTITY = ("image", "command", "args", "env", "workingDir")


def runs_as(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """Whether a pod's container is the one devjobs wants, by what it runs (admission
    adds volume mounts, the service-account token's, to every container of a pod)."""
    return all(spec_subset(want.get(k), have.get(k)) for k in _IDENTITY if k in want)


def init_container_results(
    jobs: Sequence[InitJob],
    runs: Sequence[InitContainerRun],
    wanted: Sequence[Mapping[str, Any]],
    workload: str,
) -> dict[str, InitResult]:
    """Job key -> result of each InitContainer job whose containers already ran in a
    workload pod whose devjobs init containers are exactly `wanted` (the current spec, so:
    the current commit): Failed when one of its containers failed (reason `Failed`, its
    exit code) or one before it did (clone, setup, an earlier job: `Blocked`); Succeeded
    when all of its containers exited 0. Jobs with no such run yet are left out.
    A failure in any replica counts; else the newest pod's run."""
    if not runs or not wanted:
        return {}
    order = [str(c["name"]) for c in wanted]
    want = {str(c["name"]): c for c in wanted}
    # Only pods whose devjobs init containers are exactly the current ones count: a
    # container can be the same at two commits (the clone's revision tells them apart).
    by_pod: dict[str, list[InitContainerRun]] = {}
    for seen in runs:
        by_pod.setdefault(seen.pod, []).append(seen)
    current: dict[str, InitContainerRun] = {}
    for pod_runs in by_pod.values():  # newest pod first
        if {r.name for r in pod_runs} != set(want) or not all(
            runs_as(want[r.name], json.loads(r.spec)) for r in pod_runs
        ):
            continue
        for seen in pod_runs:
            known = current.get(seen.name)
            if known is None or (not known.failed and seen.failed):
                current[seen.name] = seen
    results: dict[str, InitResult] = {}
    for job in jobs:
        names = list(job.containers)
        if not names or not all(n in want for n in names):
            continue
        last = max(order.index(n) for n in names)
        failed = next(
            ((n, current[n]) for n in order[: last + 1] if n in current and current[n].failed),
            None,
        )
        if failed is not None:
            name, run = failed
            what = run.waiting or f"exited with code {run.exit_code}"
            own = name in names
            state = JobState(
                source=job.source, job=job.job, phase=Phase.FAILED,
                reason="Failed" if own else "Blocked",
                exit_code=run.exit_code if own and not run.waiting else None,
                started=None, finished=None,
                message=f"init container {name} of {workload} pod {run.pod} {what}",
                commit=job.commit, job_name=None,
            )  # fmt: skip
            results[job.key] = InitResult(state, run.pod, name)
        elif all(n in current and current[n].exit_code == 0 for n in names):
            state = JobState(
                source=job.source, job=job.job, phase=Phase.SUCCEEDED, reason="Succeeded",
                exit_code=None, started=None, finished=None,
                message=f"ran as an init container of {workload}",
                commit=job.commit, job_name=None,
            )  # fmt: skip
            results[job.key] = InitResult(state, current[names[-1]].pod)
    return results


def init_container_states(
    jobs: Sequence[InitJob],
    runs: Sequence[InitContainerRun],
    wanted: Sequence[Mapping[str, Any]],
    workload: str,
) -> dict[str, JobState]:
    """`init_container_results`, the states only."""
    return {k: r.state for k, r in init_container_results(jobs, runs, wanted, workload).items()}
