"""A job's state as the input of its check run, shared by the controller and `devjobs run`.

Public API:
    job_report(state, commit, log_tail="") -> JobReport | None
        None when `commit` is not a full SHA (GitHub's check runs need one)

Why here: `devjobs.github.checks` is pure and knows nothing of devjobs.kube; this is
the one place a `kube.jobstate.JobState` becomes a `checks.JobReport`, so both writers
of check runs say the same thing about the same job.
"""

from __future__ import annotations

from devjobs.errors import DevjobsError
from devjobs.github.checks import JobReport
from devjobs.kube.jobstate import JobState


def job_report(state: JobState, commit: str, log_tail: str = "") -> JobReport | None:
    """The check-run input for `state` at `commit`; the log tail only once it finished."""
    try:
        return JobReport(
            source=state.source,
            job=state.job,
            commit=commit,
            phase=state.phase.value,
            reason=state.reason,
            exit_code=state.exit_code,
            started=state.started,
            finished=state.finished,
            message=state.message,
            log_tail=log_tail if state.phase.finished else "",
        )
    except DevjobsError:
        return None
