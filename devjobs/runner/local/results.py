"""What a local run produced: one result per job and the run's verdict (pure data).

Statuses, as users see them in the summary table and the reports:
- `succeeded`: every step exited 0.
- `failed`: a step (or a setup job before it) exited non-zero or could not start.
- `cancelled`: stopped by us while running: its timeout, Ctrl-C, or `--fail-fast`;
  also a job that had not started yet when Ctrl-C came.
- `skipped`: never started because an earlier lifecycle point did not succeed, or
  `--fail-fast` stopped the run first.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from devjobs.resolver.models import Trigger

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
"""As a shell reports a command stopped by SIGINT."""


class JobStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class JobResult:
    source: str
    name: str
    trigger: Trigger
    status: JobStatus
    exit_code: int | None = None
    """The failing (or last) step's exit code; None when no step finished by itself."""
    duration_seconds: float = 0.0
    attempts: int = 0
    message: str = ""
    """Why it did not succeed, in a few words ("timed out after 5s", "setup job on-create
    failed"); empty on success."""
    output_tail: tuple[str, ...] = ()
    """The last lines of output, for reports."""

    @property
    def key(self) -> str:
        return f"{self.source}/{self.name}"


@dataclass(frozen=True)
class RunResult:
    backend: str
    jobs: tuple[JobResult, ...]
    duration_seconds: float
    interrupted: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def succeeded(self) -> bool:
        return not self.interrupted and all(j.status == JobStatus.SUCCEEDED for j in self.jobs)

    @property
    def exit_code(self) -> int:
        return exit_code(self.jobs, interrupted=self.interrupted)


def exit_code(jobs: Sequence[JobResult], *, interrupted: bool) -> int:
    """130 after Ctrl-C, 1 when any job did not succeed, else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    if any(job.status != JobStatus.SUCCEEDED for job in jobs):
        return EXIT_FAILED
    return EXIT_OK


def counts(jobs: Sequence[JobResult]) -> dict[JobStatus, int]:
    """How many jobs ended in each status, every status present (zero when none)."""
    totals = dict.fromkeys(JobStatus, 0)
    for job in jobs:
        totals[job.status] += 1
    return totals


def display_key(source: str, name: str, *, single_source: bool) -> str:
    """The label of a job in output lines and tables: `job` when the plan has one source."""
    return name if single_source else f"{source}/{name}"
