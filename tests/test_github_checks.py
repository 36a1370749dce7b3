"""Check runs: the pure payloads, and the client against tests/fake_github.py.

The fake (the only stand-in; no mocks) is a local server implementing GitHub's documented
App and check-run contract: it verifies the App JWT, lets installation tokens expire on
the test's clock, enforces the check-run field limits with 422 and records every request.
Every payload test also sends its payload to the fake, so "within GitHub's limits" is
checked by the fake's rules, not only by the code that made it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devjobs.errors import DevjobsError
from devjobs.github.app import GitHubApp, StaticToken
from devjobs.github.checks import (
    MAX_TEXT,
    CheckRuns,
    JobReport,
    RunPhase,
    check_run_name,
    check_run_requests,
    log_text,
    mask,
    parse_annotations,
    parse_check_run_name,
    plain,
    status_and_conclusion,
)
from devjobs.github.http import GitHubError, GitHubHTTP, RetryLater
from tests.fake_github import FakeClock, FakeGitHub, fake_github

APP_ID = 4242
INSTALLATION = 77
REPO = "org/app"
SHA = "0123456789abcdef0123456789abcdef01234567"
START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
FILES = frozenset({"src/app.py", "src/util.py", "README.md"})
PAT = "ghp_patPATpat0123456789"


def report(phase: RunPhase = "Failed", **kw: Any) -> JobReport:
    base: dict[str, Any] = {
        "source": "web",
        "job": "test",
        "commit": SHA,
        "phase": phase,
        "reason": phase,
        "exit_code": None,
        "started": START,
        "finished": START + timedelta(seconds=83) if phase not in ("Pending", "Running") else None,
        "message": "",
        "log_tail": "",
    }
    base.update(kw)
    return JobReport(**base)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gh(clock: FakeClock) -> Iterator[FakeGitHub]:
    with fake_github(PAT, app_id=APP_ID, clock=clock, installations={INSTALLATION: {REPO}}) as fake:
        yield fake
        assert fake.violations == [], "the client broke the documented contract"


def make_client(gh: FakeGitHub, clock: FakeClock, **kw: Any) -> tuple[GitHubApp, CheckRuns]:
    http = GitHubHTTP(api_url=gh.url, clock=clock, sleep=clock.sleep, **kw)
    app = GitHubApp(APP_ID, gh.app_private_key_pem, http=http, clock=clock)
    return app, CheckRuns(app.installation(INSTALLATION), http=http)


# --- states ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "reason", "expected"),
    [
        ("Pending", "Pending", ("queued", None)),
        ("Running", "Running", ("in_progress", None)),
        ("Succeeded", "Succeeded", ("completed", "success")),
        ("Failed", "BackoffLimitExceeded", ("completed", "failure")),
        ("Failed", "DeadlineExceeded", ("completed", "timed_out")),
        ("Cancelled", "Cancelled", ("completed", "cancelled")),
    ],
)
def test_each_phase_maps_to_a_status_and_conclusion(
    phase: RunPhase, reason: str, expected: tuple[str, str | None]
) -> None:
    assert status_and_conclusion(report(phase, reason=reason)) == expected


def test_check_run_name_round_trips_and_foreign_names_are_not_ours() -> None:
    assert check_run_name("web", "test") == "devjobs/web/test"
    assert parse_check_run_name("devjobs/web/test") == ("web", "test")
    for other in ("build", "devjobs/web", "devjobs/web/test/x", "ci/web/test", "devjobs//t"):
        assert parse_check_run_name(other) is None


def test_report_refuses_unknown_phase_and_short_sha() -> None:
    with pytest.raises(DevjobsError, match="phase"):
        report("Done")  # type: ignore[arg-type]
    with pytest.raises(DevjobsError, match="full lower-case commit SHA"):
        report(commit="main")


def test_queued_payload_has_no_conclusion_times_or_text() -> None:
    [body] = check_run_requests(report("Pending", started=None))
    assert body["status"] == "queued"
    assert "conclusion" not in body and "completed_at" not in body and "started_at" not in body
    assert body["output"]["title"] == "Queued" and "text" not in body["output"]


def test_completed_payload_says_state_duration_exit_code_and_reason_in_words() -> None:
    [body] = check_run_requests(
        report(
            reason="BackoffLimitExceeded",
            exit_code=2,
            message="container job exited with code 2",
        ),
        details_url="https://ci.example/web/test",
    )
    assert body["conclusion"] == "failure"
    assert (body["started_at"], body["completed_at"]) == (
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:01:23Z",
    )
    assert body["details_url"] == "https://ci.example/web/test"
    assert body["output"]["title"] == "Failed after 1m23s: exit code 2"
    summary = body["output"]["summary"]
    for part in ("| State | Failed |", "| Duration | 1m23s |", "| Exit code | 2 |"):
        assert part in summary
    assert "failed on every attempt it was allowed" in summary
    assert "container job exited with code 2" in summary


def test_timed_out_and_cancelled_jobs_say_so() -> None:
    [timed] = check_run_requests(report(reason="DeadlineExceeded"))
    assert timed["conclusion"] == "timed_out"
    assert timed["output"]["title"] == "Timed out after 1m23s"
    assert "longer than its timeoutSeconds" in timed["output"]["summary"]
    [cancelled] = check_run_requests(report("Cancelled", finished=None), now=START)
    assert cancelled["conclusion"] == "cancelled" and cancelled["completed_at"]


def test_finished_job_without_any_time_is_refused() -> None:
    with pytest.raises(DevjobsError, match="needs finished, started or now"):
        check_run_requests(report("Succeeded", started=None, finished=None))


def test_details_url_that_is_not_http_is_left_out() -> None:
    [body] = check_run_requests(report(), details_url="javascript:alert(1)")
    assert "details_url" not in body


# --- the log -----------------------------------------------------------------------------


def test_huge_log_is_cut_at_a_line_boundary_with_a_note() -> None:
    lines = [f"line {i:06d} " + "x" * 90 for i in range(5000)]
    text = log_text("\n".join(lines))
    assert len(text) <= MAX_TEXT and len(text.encode()) <= MAX_TEXT
    note, _, fenced = text.partition("\n\n")
    assert note.startswith("*Cut to fit GitHub's 65,535-character limit: ")
    shown = fenced.removeprefix("```text\n").removesuffix("\n```").split("\n")
    assert shown[-1] == lines[-1]
    assert shown[0] in lines  # whole lines only
    dropped = 5000 - len(shown)
    assert f"{dropped:,} earlier lines" in note
    assert f"({sum(len(line) + 1 for line in lines[:dropped]):,} characters)" in note


def test_multibyte_log_fits_in_bytes_too() -> None:
    text = log_text("\n".join("é€😀" * 30 for _ in range(2000)))
    assert len(text.encode()) <= MAX_TEXT


def test_one_enormous_line_keeps_its_end_and_says_the_start_was_cut() -> None:
    text = log_text("start" + "y" * 200_000 + "END")
    assert len(text.encode()) <= MAX_TEXT
    assert text.endswith("END\n```")
    assert "the start of the first line shown" in text


def test_short_log_is_whole_and_an_empty_log_says_so() -> None:
    assert log_text("a\nb\n") == "```text\na\nb\n```"
    assert log_text("") == "*The job wrote no log.*"


def test_hostile_log_stays_text() -> None:
    hostile = (
        "\x1b[31mred\x1b[0m \x1b]8;;https://evil.example\x07link\x1b]8;;\x07\n"
        "nul\x00byte \x07bell\x08\n"
        "<img src=x onerror=alert(1)> **bold** [x](https://evil.example) @everyone\n"
        "```\n"
        "# not a heading once the fence is closed\n"
        "  ~~~~\n"
        "progress 10%\rprogress 100%\n"
        "rtl \u202etxt.exe\n"
    )
    text = log_text(hostile)
    body = text.removeprefix("```text\n").removesuffix("\n```")
    assert "\x1b" not in text and "\x00" not in text and "\x07" not in text
    assert "\u202e" not in text
    assert "red link" in body
    assert "<img src=x onerror=alert(1)> **bold**" in body  # verbatim inside the fence
    # no line inside can close the fence: fence-like lines are indented four spaces
    assert [line for line in body.split("\n") if line.lstrip(" ").startswith(("```", "~~~"))] == [
        "    ```",
        "      ~~~~",
    ]
    assert "progress 100%" in body and "progress 10%" not in body
    assert plain("a\r\nb") == "a\nb"
    assert plain("50%\r100%\r\n") == "100%\n"
    assert plain("done\r\rnext") == "next"


def test_words_from_the_job_are_escaped_in_the_summary() -> None:
    [body] = check_run_requests(report(message="<b>x</b> [a](http://e) @team | *y*"))
    summary = body["output"]["summary"]
    assert "<b>" not in summary and "[a](" not in summary and "| *y*" not in summary
    assert r"\<b\>x\</b\>" in summary and r"\@team" in summary


def test_secrets_are_masked_in_everything_sent() -> None:
    secret = "s3cr3t-VALUE"
    log = (
        f"using {secret}\n"
        f"src/app.py:3: bad token {secret}\n"
        f"src/app.py:4: split \x1b[1ms3cr3t\x1b[0m-VALUE\n"  # an escape inside the secret
    )
    bodies = check_run_requests(
        report(message=f"failed with {secret}", reason=f"R{secret}", log_tail=log),
        repo_files=FILES,
        secrets={secret, ""},
        details_url=f"https://ci.example/?t={secret}",
    )
    sent = json.dumps(bodies)
    assert secret not in sent and "***" in sent
    assert "s3cr3t" not in sent
    assert mask("a-b-ab", ["ab", "a-b"]) == "***-***"


# --- annotations -------------------------------------------------------------------------


def test_annotations_only_for_files_of_the_repository() -> None:
    log = "\n".join(
        [
            "src/app.py:12:5: F821 undefined name 'x'",
            "./src/util.py:3: warning: unused import",
            "/workspaces/app/README.md:1: note: heading",
            "ERROR src/app.py:40: E501 line too long",
            "vendor/lib.py:1: not ours",
            "/etc/passwd:1: absolute, outside the workspace",
            "src/../../etc/shadow:1: escapes the repository",
            "src/app.py:0: line zero is no line",
            "src/app.py:12:5: F821 undefined name 'x'",  # repeated: one annotation
            "just text: with colons: 12",
        ]
    )
    found = parse_annotations(log, repo_files=FILES, workspace="/workspaces/app")
    assert [(a["path"], a["start_line"], a["annotation_level"]) for a in found] == [
        ("src/app.py", 12, "failure"),
        ("src/util.py", 3, "warning"),
        ("README.md", 1, "notice"),
        ("src/app.py", 40, "failure"),
    ]
    assert found[0]["start_column"] == found[0]["end_column"] == 5
    assert "start_column" not in found[1]


def test_annotations_only_for_a_failed_job() -> None:
    log = "src/app.py:1: warning: deprecated"
    [ok] = check_run_requests(report("Succeeded", log_tail=log), repo_files=FILES)
    assert "annotations" not in ok["output"]
    [failed] = check_run_requests(report(log_tail=log), repo_files=FILES)
    assert len(failed["output"]["annotations"]) == 1


def test_120_annotations_go_as_50_then_two_updates_of_50_and_20() -> None:
    log = "\n".join(f"src/app.py:{i}: E{i} problem" for i in range(1, 121))
    bodies = check_run_requests(report(log_tail=log), repo_files=FILES)
    assert [len(b["output"].get("annotations", [])) for b in bodies] == [50, 50, 20]
    assert "name" in bodies[0] and set(bodies[1]) == {"output"}
    assert bodies[1]["output"]["summary"] == bodies[0]["output"]["summary"]
    assert "120 log lines name files of this commit" in bodies[0]["output"]["summary"]


def test_annotation_fields_stay_within_githubs_limits() -> None:
    log = f"src/app.py:7: {'m' * 100_000}"
    [body] = check_run_requests(
        report(log_tail=log, source="s" * 200, job="j" * 200), repo_files=FILES
    )
    [annotation] = body["output"]["annotations"]
    assert len(annotation["message"]) <= 4000 and len(annotation["title"]) <= 255


# --- the client against the fake -----------------------------------------------------------


def test_a_failing_job_is_created_queued_then_completed_with_all_its_annotations(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    _, checks = make_client(gh, clock)
    run_id = checks.publish(REPO, check_run_requests(report("Pending")))
    checks.publish(REPO, check_run_requests(report("Running", started=START)), check_run_id=run_id)
    log = "\n".join(f"src/app.py:{i}:1: E{i} problem" for i in range(1, 121))
    created: list[int] = []
    checks.publish(
        REPO,
        check_run_requests(report(exit_code=1, log_tail=log), repo_files=FILES),
        check_run_id=run_id,
        on_created=created.append,
    )
    assert created == []  # it existed already
    run = gh.check_runs[run_id]
    assert (run["status"], run["conclusion"], run["name"]) == (
        "completed",
        "failure",
        "devjobs/web/test",
    )
    assert len(run["output"]["annotations"]) == 120
    sent = [
        (r["method"], len(r["body"].get("output", {}).get("annotations", [])))
        for r in gh.check_run_requests
    ]
    assert sent == [("POST", 0), ("PATCH", 0), ("PATCH", 50), ("PATCH", 50), ("PATCH", 20)]
    assert gh.issued == [INSTALLATION]  # one token for all of it


def test_huge_hostile_payload_is_accepted_by_the_fakes_limits(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    _, checks = make_client(gh, clock)
    log = "\n".join(f"\x1b[31m\x00src/app.py:{i}: <b>é€</b> " + "z" * 300 for i in range(3000))
    run_id = checks.publish(REPO, check_run_requests(report(log_tail=log), repo_files=FILES))
    text = gh.check_runs[run_id]["output"]["text"]
    assert text.startswith("*Cut to fit") and "\x00" not in text


def test_expired_installation_token_is_renewed_between_updates(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    _, checks = make_client(gh, clock)
    run_id = checks.create(REPO, check_run_requests(report("Pending"))[0])
    clock.advance(2 * 3600)
    checks.update(REPO, run_id, check_run_requests(report("Succeeded"))[0])
    assert gh.issued == [INSTALLATION, INSTALLATION]
    assert gh.check_runs[run_id]["conclusion"] == "success"


def test_token_revoked_early_is_renewed_after_the_401(gh: FakeGitHub, clock: FakeClock) -> None:
    _, checks = make_client(gh, clock)
    run_id = checks.create(REPO, check_run_requests(report("Pending"))[0])
    gh.revoke()
    checks.update(REPO, run_id, check_run_requests(report("Succeeded"))[0])
    assert gh.check_runs[run_id]["conclusion"] == "success"
    assert len(gh.issued) == 2
    gh.violations.clear()  # the fake rightly recorded the revoked token's 401


def test_403_rate_limit_is_waited_out_then_retried(gh: FakeGitHub, clock: FakeClock) -> None:
    _, checks = make_client(gh, clock)
    gh.rate_limit_next(match="check-runs")  # primary: remaining 0 until 30 s from now
    gh.rate_limit_next(retry_after=7, match="check-runs")
    checks.create(REPO, check_run_requests(report("Pending"))[0])
    assert clock.sleeps == [31.0, 7.0]
    assert len(gh.check_runs) == 1


def test_rate_limit_longer_than_the_cap_raises_retry_later_without_sleeping(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    _, checks = make_client(gh, clock, max_wait=10)
    gh.rate_limit_next(match="check-runs")
    with pytest.raises(RetryLater) as err:
        checks.create(REPO, check_run_requests(report("Pending"))[0])
    assert err.value.wait == 31.0 and err.value.status == 403
    assert clock.sleeps == [] and gh.check_runs == {}
    checks.create(REPO, check_run_requests(report("Pending"))[0])  # later, it goes


def test_5xx_is_retried_and_exhausted_retries_say_retry_later(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    _, checks = make_client(gh, clock, max_retries=2)
    gh.fail_next(502, match="check-runs")
    checks.create(REPO, check_run_requests(report("Pending"))[0])
    assert clock.sleeps == [1.0]
    for _ in range(3):
        gh.fail_next(503, match="check-runs")
    with pytest.raises(RetryLater, match="gave up after 3 attempts"):
        checks.create(REPO, check_run_requests(report("Pending"))[0])


def test_a_personal_token_cannot_create_check_runs(gh: FakeGitHub, clock: FakeClock) -> None:
    checks = CheckRuns(StaticToken(PAT), http=GitHubHTTP(api_url=gh.url, sleep=clock.sleep))
    with pytest.raises(GitHubError, match=r"403 You must authenticate via a GitHub App") as err:
        checks.create(REPO, check_run_requests(report("Pending"))[0])
    assert PAT not in str(err.value) and PAT not in repr(checks)
    gh.violations.clear()


def test_repository_without_the_installation_is_a_clear_404(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    _, checks = make_client(gh, clock)
    with pytest.raises(GitHubError, match="not installed on this repository"):
        checks.create("org/other", check_run_requests(report("Pending"))[0])
    gh.violations.clear()


def test_the_fake_refuses_check_runs_that_break_githubs_rules(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    """The fake's checks are real: each broken body is a 422 (and a recorded violation)."""
    _, checks = make_client(gh, clock, max_retries=0)
    good = check_run_requests(report("Pending"))[0]
    annotation = {
        "path": "a",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "failure",
        "message": "m",
    }
    output = {"title": "t", "summary": "s"}
    done = "2024-05-01T10:00:00Z"

    def annotated(**fields: Any) -> dict[str, Any]:
        return {**good, "output": {**output, "annotations": [{**annotation, **fields}]}}

    broken: list[dict[str, Any]] = [
        {**good, "name": ""},
        {**good, "name": "n" * 256},
        {**good, "head_sha": "main"},
        {**good, "status": "waiting"},
        {**good, "status": "completed"},
        {**good, "status": "queued", "conclusion": "success", "completed_at": done},
        {**good, "conclusion": "success"},
        {**good, "conclusion": "stale", "completed_at": done},
        {**good, "started_at": "yesterday"},
        {**good, "output": {"title": "t"}},
        {**good, "output": {**output, "text": "x" * (MAX_TEXT + 1)}},
        {**good, "output": {**output, "annotations": [annotation] * 51}},
        annotated(annotation_level="error"),
        annotated(end_line=2, start_column=1),
        annotated(message="m" * 70_000),
        annotated(title="t" * 256),
        annotated(start_line=0),
        {**good, "details_url": "ftp://x"},
        {**good, "colour": "red"},
    ]  # fmt: skip
    for body in broken:
        with pytest.raises(GitHubError, match="422 Validation Failed") as err:
            checks.create(REPO, body)
        assert err.value.status == 422, body
    assert len(gh.violations) == len(broken) and gh.check_runs == {}
    with pytest.raises(GitHubError, match="404"):
        checks.update(REPO, 999, good)
    gh.violations.clear()
