"""What the controller may do, as data: `decide` returns these, `act` executes them.

Every write the controller makes is one of these actions, so a round's writes can be
read (and tested) before they happen, and an idle controller is one whose decision is
empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devjobs.github.checks import JobReport
from devjobs.kube.jobstate import JobState


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
class OpenGate:
    """Remove devjobs' scheduling gate (`vocabulary.PREDEPLOY_GATE`) from a workload pod of
    the target namespace: the commit's PreDeploy jobs succeeded, the pod may start. Guarded
    by the pod's uid and the gate's place, so a recreated pod or a changed list is left
    for the next round."""

    pod: str
    uid: str
    gate_index: int


@dataclass(frozen=True)
class RecordOpenings:
    """Apply the record of the pod templates the gate was opened for (`kube.openings`),
    before the pods it lets open are opened."""

    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class WriteConditions:
    conditions: tuple[Mapping[str, Any], ...]
    remove: tuple[str, ...] = ()
    """devjobs' condition types to drop: jobs no longer in the current commit's plan."""


@dataclass(frozen=True)
class SaveLogTail:
    """Keep the logs of a finished Job's pod (one log record per job key), so they
    outlive the Job and its pods."""

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


@dataclass(frozen=True)
class PostStatus:
    """Post a GitHub commit status for `state` (at `state.commit`), then keep the posted
    state where a restarted controller reads it back: on the Job `job_name`, or, for an
    InitContainer job (which has no object of its own), on the workload Deployment."""

    state: JobState
    repository_url: str | None
    job_name: str | None = None
    workload: str | None = None


@dataclass(frozen=True)
class PostCheckRun:
    """Create (no `check_run_id`) or update a GitHub check run of one job run, then keep
    `record` (`<id>:<status>[:<conclusion>]`) where a restarted controller reads it back:
    on the Job `job_name`, or for an InitContainer job on the workload Deployment (with
    `@<commit>`). `report` and `details_url` are what `github.checks.check_run_requests`
    makes the bodies from; the repository's files (for annotations) are looked up when
    the run is posted."""

    report: JobReport
    repo: str
    """`owner/name` on GitHub."""
    installation_id: int
    status: str
    """The record's `<status>[:<conclusion>]` once posted."""
    check_run_id: int | None = None
    details_url: str | None = None
    workspace: str | None = None
    job_name: str | None = None
    workload: str | None = None
    repository_url: str | None = None
    """The source's repositoryUrl: where the repository's files are looked up."""


Action = (
    CreateJob
    | DeleteJob
    | ApplyWorkload
    | OpenGate
    | RecordOpenings
    | SaveLogTail
    | WriteConditions
    | ClearManualRequest
    | RecordEvent
    | PostStatus
    | PostCheckRun
)

ORDER: tuple[type, ...] = (
    DeleteJob,
    ApplyWorkload,
    CreateJob,
    RecordOpenings,
    OpenGate,
    ClearManualRequest,
    SaveLogTail,
    WriteConditions,
    RecordEvent,
    PostStatus,
    PostCheckRun,
)
"""The order a round's actions run in: cancel first, then create; conditions once the
objects they describe exist; GitHub last (a courtesy that may be slow or refused)."""


@dataclass(frozen=True)
class Decision:
    """One round's result: the actions, and what the commit statuses of InitContainer
    jobs were decided from (for tests and logs)."""

    actions: list[Action]
    init_statuses: Mapping[str, JobState] = field(default_factory=dict)
    """Job key -> state (with its commit) of each InitContainer job of the current commit
    whose workload patch is applied once this round's actions have run."""
    init_cancelled: tuple[JobState, ...] = ()
    """Cancelled states, at their old commit, of InitContainer jobs whose last posted
    status is `pending` at a commit the Environment has left."""
