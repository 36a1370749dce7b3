"""Conditions: job states as metav1.Conditions and their merge into another owner's list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devjobs.errors import DevjobsError
from devjobs.kube.conditions import (
    MAX_MESSAGE_BYTES,
    REASON_PATTERN,
    TYPE_PATTERN,
    aggregate_condition,
    bounded_message,
    condition_type,
    job_condition,
    merge_conditions,
)
from devjobs.kube.jobstate import JobState, Phase

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def state(
    phase: Phase,
    *,
    source: str = "web",
    job: str = "test",
    reason: str | None = None,
    exit_code: int | None = None,
    message: str = "",
    finished: datetime | None = None,
) -> JobState:
    return JobState(
        source=source,
        job=job,
        phase=phase,
        reason=reason or phase.value,
        exit_code=exit_code,
        started=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        finished=finished,
        message=message,
        commit="abc",
        job_name="web-test-1",
    )


# --- condition_type ------------------------------------------------------------------


def test_condition_type_is_job_dot_source_dot_job() -> None:
    assert condition_type("web", "unit-test") == "Job.web.unit-test"


@given(source=LABEL, job=LABEL)
def test_condition_type_of_any_pair_of_kubernetes_names_is_valid(source: str, job: str) -> None:
    ctype = condition_type(source, job)
    assert TYPE_PATTERN.fullmatch(ctype) and len(ctype) <= 316 and ":" not in ctype


@given(source=st.text(max_size=400), job=st.text(max_size=400))
def test_condition_type_of_arbitrary_names_is_valid_or_a_clear_error(source: str, job: str) -> None:
    try:
        ctype = condition_type(source, job)
    except DevjobsError as err:
        assert err.place == f"job {source}/{job}"
        assert err.message
    else:
        assert TYPE_PATTERN.fullmatch(ctype) and len(ctype) <= 316
        assert ":" not in ctype and "=" not in ctype


@pytest.mark.parametrize(
    ("source", "job"),
    [
        ("web", "a:b"),
        ("", "x"),
        ("web", "x-"),
        ("web", "x\n"),
        ("we/b", "x"),
        ("web", "x" * 320),
        ("web", "ü"),
    ],
)
def test_condition_type_refuses_names_the_api_server_would_reject(source: str, job: str) -> None:
    with pytest.raises(DevjobsError, match="job "):
        condition_type(source, job)


# --- job_condition -------------------------------------------------------------------


def test_succeeded_job_is_true_with_exit_code_and_finish_time() -> None:
    done = datetime(2024, 5, 1, 10, 3, 4, 567, tzinfo=UTC)
    cond = job_condition(
        state(Phase.SUCCEEDED, exit_code=0, message="exit code 0", finished=done), generation=7
    )
    assert cond == {
        "type": "Job.web.test",
        "status": "True",
        "reason": "Succeeded",
        "message": "exit code 0",
        "observedGeneration": 7,
        "lastTransitionTime": "2024-05-01T10:03:04Z",
    }


@pytest.mark.parametrize(
    ("phase", "reason", "status"),
    [
        (Phase.PENDING, "Pending", "Unknown"),
        (Phase.RUNNING, "Running", "Unknown"),
        (Phase.FAILED, "BackoffLimitExceeded", "False"),
        (Phase.FAILED, "DeadlineExceeded", "False"),
        (Phase.CANCELLED, "Cancelled", "False"),
    ],
)
def test_status_and_reason_follow_the_phase(phase: Phase, reason: str, status: str) -> None:
    cond = job_condition(state(phase, reason=reason), generation=1)
    assert (cond["status"], cond["reason"]) == (status, reason)
    assert REASON_PATTERN.match(cond["reason"])


def test_invalid_reason_falls_back_to_the_phase() -> None:
    cond = job_condition(state(Phase.FAILED, reason="bad reason!"), generation=1)
    assert cond["reason"] == "Failed"


def test_failed_message_has_exit_code_and_last_lines_of_output() -> None:
    log = "".join(f"line {i}\n" for i in range(1000)) + "FAIL: test_x\n"
    cond = job_condition(
        state(Phase.FAILED, exit_code=2, message="BackoffLimitExceeded"), generation=1, log_tail=log
    )
    lines = cond["message"].split("\n")
    assert lines[0] == "exit code 2: BackoffLimitExceeded"
    assert lines[-1] == "FAIL: test_x"
    assert lines[-2] == "line 999"
    assert len(cond["message"].encode()) <= MAX_MESSAGE_BYTES
    # Whole lines only: the first kept output line is complete.
    assert lines[1].startswith("line ")


def test_message_is_bounded_for_huge_multibyte_lines() -> None:
    msg = bounded_message("é" * 5000, "日本語" * 10000)
    assert len(msg.encode()) <= MAX_MESSAGE_BYTES
    head, tail = msg.split("\n")
    assert head.endswith("…") and tail.startswith("…") and tail.endswith("語")


def test_message_drops_terminal_escapes_and_keeps_the_last_carriage_return_segment() -> None:
    msg = bounded_message("", "\x1b[31mred\x1b[0m\nprogress 10%\rprogress 100%\n\x07bell\n")
    assert msg == "red\nprogress 100%\nbell"


# --- aggregate_condition -------------------------------------------------------------


def test_aggregate_is_true_only_when_every_job_succeeded() -> None:
    states = [state(Phase.SUCCEEDED, job="a"), state(Phase.SUCCEEDED, job="b")]
    cond = aggregate_condition(states, generation=3)
    assert (cond["type"], cond["status"], cond["reason"]) == ("JobsSucceeded", "True", "Succeeded")
    assert cond["message"] == "2 of 2 jobs succeeded"
    assert cond["observedGeneration"] == 3


def test_aggregate_is_false_as_soon_as_one_fails_and_names_it() -> None:
    states = [
        state(Phase.SUCCEEDED, job="a"),
        state(Phase.FAILED, job="b"),
        state(Phase.RUNNING, job="c"),
        state(Phase.CANCELLED, job="d"),
    ]
    cond = aggregate_condition(states, generation=3)
    assert (cond["status"], cond["reason"]) == ("False", "Failed")
    assert cond["message"] == "1 of 4 jobs succeeded; failed: web/b; cancelled: web/d; 1 running"


def test_aggregate_with_only_cancellations_says_cancelled() -> None:
    cond = aggregate_condition([state(Phase.CANCELLED)], generation=1)
    assert (cond["status"], cond["reason"]) == ("False", "Cancelled")


def test_aggregate_is_unknown_while_jobs_are_pending_or_running() -> None:
    pending = aggregate_condition(
        [state(Phase.PENDING), state(Phase.SUCCEEDED, job="b")], generation=1
    )
    assert (pending["status"], pending["reason"]) == ("Unknown", "Pending")
    running = aggregate_condition(
        [state(Phase.PENDING), state(Phase.RUNNING, job="b")], generation=1
    )
    assert (running["status"], running["reason"]) == ("Unknown", "Running")


def test_aggregate_of_no_jobs_is_vacuously_true() -> None:
    cond = aggregate_condition([], generation=1)
    assert (cond["status"], cond["reason"]) == ("True", "NoJobs")


def test_aggregate_message_is_bounded_with_many_failures() -> None:
    states = [state(Phase.FAILED, job=f"job-{i:04d}-{'x' * 40}") for i in range(200)]
    assert len(aggregate_condition(states, generation=1)["message"].encode()) <= MAX_MESSAGE_BYTES


# --- merge_conditions ----------------------------------------------------------------

READY = {
    "type": "Ready",
    "status": "True",
    "reason": "Deployed",
    "message": "catalyst's",
    "lastTransitionTime": "2024-05-01T09:00:00Z",
    "observedGeneration": 2,
}


def desired(
    status: str = "Unknown", reason: str = "Running", message: str = "running", gen: int = 2
) -> dict[str, Any]:
    return {
        "type": "Job.web.test",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
    }


def test_new_condition_is_appended_after_others_untouched_with_now() -> None:
    merged = merge_conditions([READY], [desired()], now=NOW)
    assert merged == [READY, {**desired(), "lastTransitionTime": "2024-05-01T12:00:00Z"}]


def test_nothing_changes_gives_none() -> None:
    current = [READY, {**desired(), "lastTransitionTime": "2024-05-01T10:00:00Z"}]
    assert merge_conditions(current, [desired()], now=NOW) is None
    assert merge_conditions(current, [], now=NOW) is None


def test_message_change_keeps_last_transition_time_when_status_is_the_same() -> None:
    current = [
        {
            **desired(reason="Pending", message="pending"),
            "lastTransitionTime": "2024-05-01T10:00:00Z",
        }
    ]
    merged = merge_conditions(current, [desired()], now=NOW)
    assert merged == [{**desired(), "lastTransitionTime": "2024-05-01T10:00:00Z"}]


def test_status_change_takes_the_desired_transition_time_or_now() -> None:
    current = [{**desired(), "lastTransitionTime": "2024-05-01T10:00:00Z"}]
    finished = {
        **desired("True", "Succeeded", "exit code 0"),
        "lastTransitionTime": "2024-05-01T11:00:00Z",
    }
    assert merge_conditions(current, [finished], now=NOW) == [finished]
    no_time = desired("False", "Failed", "exit code 1")
    assert merge_conditions(current, [no_time], now=NOW) == [
        {**no_time, "lastTransitionTime": "2024-05-01T12:00:00Z"}
    ]


def test_generation_change_alone_is_a_change() -> None:
    current = [{**desired(), "lastTransitionTime": "2024-05-01T10:00:00Z"}]
    merged = merge_conditions(current, [desired(gen=3)], now=NOW)
    assert merged is not None and merged[0]["observedGeneration"] == 3


def test_other_owners_conditions_keep_their_place_and_content() -> None:
    other = {**READY, "type": "Building"}
    mine = {**desired(), "lastTransitionTime": "2024-05-01T10:00:00Z"}
    merged = merge_conditions([READY, mine, other], [desired("True", "Succeeded", "ok")], now=NOW)
    assert merged is not None
    assert merged[0] == READY and merged[2] == other
    assert merged[1]["status"] == "True"


def test_duplicate_desired_types_are_an_error() -> None:
    with pytest.raises(DevjobsError, match="given twice"):
        merge_conditions([], [desired(), desired()], now=NOW)


def test_merge_does_not_mutate_its_inputs() -> None:
    existing = [dict(READY)]
    want = [desired()]
    merge_conditions(existing, want, now=NOW)
    assert existing == [READY] and want == [desired()]


CONDITION = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["Ready", "Building", "Job.web.test", "Job.web.lint", "JobsSucceeded"]
        ),
        "status": st.sampled_from(["True", "False", "Unknown"]),
        "reason": st.sampled_from(["Running", "Succeeded", "Failed"]),
        "message": st.text(max_size=5),
        "observedGeneration": st.integers(0, 3),
        "lastTransitionTime": st.sampled_from(["2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"]),
    }
)


def _unique(conds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({c["type"]: c for c in conds}.values())


@given(
    existing=st.lists(CONDITION, max_size=5).map(_unique),
    wanted=st.lists(CONDITION, max_size=4).map(_unique),
)
def test_merge_keeps_other_types_applies_desired_and_is_idempotent(
    existing: list[dict[str, Any]], wanted: list[dict[str, Any]]
) -> None:
    merged = merge_conditions(existing, wanted, now=NOW)
    result = existing if merged is None else merged
    by_type = {c["type"]: c for c in result}
    mine = {c["type"] for c in wanted}
    assert [c for c in result if c["type"] not in mine] == [
        c for c in existing if c["type"] not in mine
    ]
    for want in wanted:
        got = by_type[want["type"]]
        assert all(got[k] == want[k] for k in ("status", "reason", "message", "observedGeneration"))
    assert len(result) == len(by_type)  # no duplicate types
    assert merge_conditions(result, wanted, now=NOW) is None  # a second pass changes nothing
