"""GitHub commit statuses, against tests/fake_github.py: a local fake of GitHub's documented
`POST /repos/{owner}/{repo}/statuses/{sha}` contract that checks every request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devjobs.errors import DevjobsError
from devjobs.github.statuses import (
    GitHubStatuses,
    StatusState,
    description_for,
    github_repo,
    post_job_status,
    state_for,
    status_context,
)
from devjobs.kube.jobstate import JobState, Phase
from tests.fake_github import FakeGitHub, fake_github

TOKEN = "ghp_s3cretTOKENvalue0123456789"
SHA = "0123456789abcdef0123456789abcdef01234567"


class FakeTime:
    """Injected clock and sleep: waits are recorded, not slept."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with fake_github(TOKEN) as fake:
        yield fake
        assert fake.violations == [], "the client broke the documented contract"


def client(gh: FakeGitHub, fake_time: FakeTime | None = None, **kwargs: object) -> GitHubStatuses:
    t = fake_time or FakeTime()
    return GitHubStatuses(TOKEN, api_url=gh.url, sleep=t.sleep, clock=t.clock, **kwargs)  # type: ignore[arg-type]


# --- the request -----------------------------------------------------------------------


def test_status_is_posted_with_the_documented_method_path_headers_and_body(gh: FakeGitHub) -> None:
    posted = client(gh).set_status(
        "org/app", SHA, context="devjobs/web/test", state="pending", description="Running"
    )
    assert posted is True
    [request] = gh.requests
    assert request["method"] == "POST"
    assert request["path"] == f"/repos/org/app/statuses/{SHA}"
    assert request["headers"]["accept"] == "application/vnd.github+json"
    assert request["headers"]["x-github-api-version"] == "2022-11-28"
    assert request["headers"]["content-type"] == "application/json"
    assert json.loads(request["body"]) == {
        "state": "pending",
        "description": "Running",
        "context": "devjobs/web/test",
    }
    assert [(s["repo"], s["sha"], s["state"]) for s in gh.statuses] == [("org/app", SHA, "pending")]


def test_pending_then_success_are_two_statuses_on_the_same_context(gh: FakeGitHub) -> None:
    statuses = client(gh)
    states: tuple[StatusState, ...] = ("pending", "success")
    for state in states:
        statuses.set_status(
            "org/app", SHA, context="devjobs/web/test", state=state, description=state
        )
    assert [s["state"] for s in gh.statuses] == ["pending", "success"]
    assert {s["context"] for s in gh.statuses} == {"devjobs/web/test"}


def test_same_status_is_not_posted_twice_by_one_process(gh: FakeGitHub) -> None:
    statuses = client(gh)
    args = {"context": "devjobs/web/test", "state": "pending", "description": "Running"}
    assert statuses.set_status("org/app", SHA, **args) is True  # type: ignore[arg-type]
    assert statuses.set_status("org/app", SHA, **args) is False  # type: ignore[arg-type]
    again = {**args, "description": "Running (attempt 2)"}
    assert statuses.set_status("org/app", SHA, **again) is True  # type: ignore[arg-type]
    assert len(gh.requests) == 2


def test_long_description_is_cut_to_140_characters(gh: FakeGitHub) -> None:
    client(gh).set_status("org/app", SHA, context="c", state="failure", description="é" * 500)
    assert len(gh.statuses[0]["description"]) == 140
    assert gh.statuses[0]["description"].endswith("…")


def test_target_url_template_is_filled_with_quoted_fields(gh: FakeGitHub) -> None:
    statuses = client(
        gh, target_url_template="https://ci.example/{repo}/{sha}/{source}/{job}?c={context}"
    )
    statuses.set_status(
        "org/app", SHA, context="devjobs/web/unit test", state="pending", description="x"
    )
    assert gh.statuses[0]["target_url"] == (
        f"https://ci.example/org/app/{SHA}/web/unit%20test?c=devjobs%2Fweb%2Funit%20test"
    )


def test_explicit_target_url_wins_over_the_template(gh: FakeGitHub) -> None:
    statuses = client(gh, target_url_template="https://ci.example/{sha}")
    statuses.set_status(
        "org/app",
        SHA,
        context="c",
        state="pending",
        description="x",
        target_url="https://x.example/1",
    )
    assert gh.statuses[0]["target_url"] == "https://x.example/1"


def test_unknown_template_field_is_refused_at_construction() -> None:
    with pytest.raises(DevjobsError, match=r"unknown field\(s\) \['branch'\]"):
        GitHubStatuses(TOKEN, target_url_template="https://ci.example/{branch}")


@pytest.mark.parametrize(
    ("repo", "sha", "state", "match"),
    [
        ("not a repo", SHA, "pending", "owner/name"),
        ("org/app", "main", "pending", "full commit SHA"),
        ("org/app", SHA, "done", "state 'done'"),
    ],
)
def test_invalid_arguments_are_refused_before_any_request(
    gh: FakeGitHub, repo: str, sha: str, state: str, match: str
) -> None:
    with pytest.raises(DevjobsError, match=match):
        client(gh).set_status(repo, sha, context="c", state=state, description="x")  # type: ignore[arg-type]
    assert gh.requests == []


# --- retries and refusals --------------------------------------------------------------


def test_5xx_is_retried_with_growing_backoff(gh: FakeGitHub) -> None:
    t = FakeTime()
    gh.fail_next(502)
    gh.fail_next(503)
    gh.fail_next(500)
    client(gh, t).set_status("org/app", SHA, context="c", state="success", description="ok")
    assert t.sleeps == [1.0, 2.0, 4.0]
    assert len(gh.requests) == 4 and len(gh.statuses) == 1


def test_5xx_gives_up_after_max_retries_with_a_clear_error(gh: FakeGitHub) -> None:
    t = FakeTime()
    for _ in range(3):
        gh.fail_next(502, message="Server Error")
    with pytest.raises(DevjobsError, match=r"gave up after 3 attempts: 502 Server Error") as err:
        client(gh, t, max_retries=2).set_status(
            "org/app", SHA, context="c", state="success", description="ok"
        )
    assert TOKEN not in str(err.value)
    assert len(gh.requests) == 3 and gh.statuses == []


def test_secondary_rate_limit_waits_retry_after(gh: FakeGitHub) -> None:
    t = FakeTime()
    gh.fail_next(403, {"retry-after": "7"}, "You have exceeded a secondary rate limit")
    gh.fail_next(429, {"retry-after": "3"}, "You have exceeded a secondary rate limit")
    client(gh, t).set_status("org/app", SHA, context="c", state="success", description="ok")
    assert t.sleeps == [7.0, 3.0]
    assert len(gh.statuses) == 1


def test_primary_rate_limit_waits_until_reset(gh: FakeGitHub) -> None:
    t = FakeTime()
    reset = int(t.now) + 20
    gh.fail_next(
        403,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        "API rate limit exceeded",
    )
    client(gh, t).set_status("org/app", SHA, context="c", state="success", description="ok")
    assert t.sleeps == [21.0]  # until the reset, plus a second of margin
    assert len(gh.statuses) == 1


def test_rate_limit_longer_than_the_allowed_wait_raises_instead_of_blocking(gh: FakeGitHub) -> None:
    t = FakeTime()
    reset = int(t.now) + 3000
    gh.fail_next(
        429,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        "API rate limit exceeded",
    )
    with pytest.raises(DevjobsError, match=r"rate limited until .* more than the 60s allowed"):
        client(gh, t, max_wait=60).set_status(
            "org/app", SHA, context="c", state="success", description="ok"
        )
    assert t.sleeps == []


def test_secondary_limit_without_headers_waits_at_least_a_minute(gh: FakeGitHub) -> None:
    t = FakeTime()
    gh.fail_next(403, {}, "You have exceeded a secondary rate limit")
    client(gh, t, max_wait=300).set_status(
        "org/app", SHA, context="c", state="success", description="ok"
    )
    assert t.sleeps == [60.0]


def test_forbidden_that_is_not_a_rate_limit_is_not_retried(gh: FakeGitHub) -> None:
    t = FakeTime()
    gh.fail_next(403, {}, "Resource not accessible by integration")
    with pytest.raises(
        DevjobsError, match=r"403 Resource not accessible by integration .*statuses: write"
    ):
        client(gh, t).set_status("org/app", SHA, context="c", state="success", description="ok")
    assert t.sleeps == [] and len(gh.requests) == 1


def test_bad_token_is_a_clear_error_without_the_token(gh: FakeGitHub) -> None:
    statuses = GitHubStatuses("ghp_wrongWRONGwrong", api_url=gh.url)
    with pytest.raises(DevjobsError, match="401 Bad credentials") as err:
        statuses.set_status("org/app", SHA, context="c", state="success", description="ok")
    assert "ghp_wrong" not in str(err.value) and "ghp_wrong" not in repr(statuses)
    gh.violations.clear()  # the fake rightly recorded the wrong token


def test_failed_post_is_not_cached(gh: FakeGitHub) -> None:
    statuses = client(gh, max_retries=0)
    gh.fail_next(502)
    with pytest.raises(DevjobsError):
        statuses.set_status("org/app", SHA, context="c", state="success", description="ok")
    assert (
        statuses.set_status("org/app", SHA, context="c", state="success", description="ok") is True
    )


def test_unreachable_server_is_retried_then_reported() -> None:
    t = FakeTime()
    statuses = GitHubStatuses(
        TOKEN, api_url="http://127.0.0.1:9", sleep=t.sleep, clock=t.clock, max_retries=2
    )
    with pytest.raises(DevjobsError, match="gave up after 3 attempts") as err:
        statuses.set_status("org/app", SHA, context="c", state="success", description="ok")
    assert t.sleeps == [1.0, 2.0]
    assert TOKEN not in str(err.value)


# --- pure helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "repo"),
    [
        ("https://github.com/org/app.git", "org/app"),
        ("https://github.com/org/app", "org/app"),
        ("https://github.com/org/app/", "org/app"),
        ("http://www.github.com/Org/my.app.git", "Org/my.app"),
        ("https://x-access-token:abc@github.com/org/app.git", "org/app"),
        ("git@github.com:org/app", "org/app"),
        ("git@github.com:org/app.git", "org/app"),
        ("ssh://git@github.com/org/app.git", "org/app"),
        ("github.com/org/app", "org/app"),
        ("https://gitlab.com/org/app.git", None),
        ("https://github.com/org/app/tree/main", None),
        ("https://github.com/org", None),
        ("https://github.com.evil.example/org/app", None),
        ("/home/me/app", None),
        ("", None),
    ],
)
def test_github_repo_from_repository_urls(url: str, repo: str | None) -> None:
    assert github_repo(url) == repo


def test_github_repo_for_an_enterprise_host() -> None:
    assert github_repo("https://ghe.corp/org/app.git", host="ghe.corp") == "org/app"
    assert github_repo("https://ghe.corp/org/app.git") is None


def test_state_for_each_phase() -> None:
    assert {p: state_for(p) for p in Phase} == {
        Phase.PENDING: "pending",
        Phase.RUNNING: "pending",
        Phase.SUCCEEDED: "success",
        Phase.FAILED: "failure",
        Phase.CANCELLED: "error",
    }


def test_status_context_names_source_and_job() -> None:
    assert status_context("web", "test") == "devjobs/web/test"


def _state(phase: Phase, **kw: object) -> JobState:
    start = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    base: dict[str, object] = {
        "source": "web",
        "job": "test",
        "phase": phase,
        "reason": phase.value,
        "exit_code": None,
        "started": start,
        "finished": None,
        "message": "",
        "commit": SHA,
        "job_name": "j",
    }
    base.update(kw)
    return JobState(**base)  # type: ignore[arg-type]


def test_descriptions_are_short_and_say_what_happened() -> None:
    start = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    ok = _state(Phase.SUCCEEDED, finished=start + timedelta(seconds=83), exit_code=0)
    assert description_for(ok) == "Succeeded in 1m23s"
    failed = _state(
        Phase.FAILED,
        reason="BackoffLimitExceeded",
        exit_code=2,
        message="container job exited with code 2",
    )
    assert description_for(failed) == "BackoffLimitExceeded: container job exited with code 2"
    assert description_for(_state(Phase.RUNNING, message="running")) == "Running: running"
    policy = _state(
        Phase.FAILED,
        exit_code=2,
        message="PodFailurePolicy: Container fail for pod ns/pr-9-app-fail-7a8b8fb74a-p54mw "
        "failed with exit code 2 matching FailJob rule at index 1; container fail exited "
        "with code 2",
    )
    assert description_for(policy) == "Failed: container fail exited with code 2"
    long = _state(Phase.FAILED, message="x" * 1000)
    assert len(description_for(long)) == 140


def test_job_status_is_posted_for_a_github_source_with_a_commit(gh: FakeGitHub) -> None:
    statuses = client(gh)
    failed = _state(
        Phase.FAILED,
        reason="BackoffLimitExceeded",
        exit_code=1,
        message="container job exited with code 1",
    )
    assert post_job_status(statuses, "git@github.com:org/app.git", failed) is True
    [status] = gh.statuses
    assert (status["repo"], status["sha"], status["context"], status["state"]) == (
        "org/app",
        SHA,
        "devjobs/web/test",
        "failure",
    )
    assert status["description"] == "BackoffLimitExceeded: container job exited with code 1"
    assert post_job_status(statuses, "git@github.com:org/app.git", failed) is False  # cached


def test_job_status_is_skipped_without_token_github_repository_or_commit(gh: FakeGitHub) -> None:
    ok = _state(Phase.SUCCEEDED)
    assert post_job_status(None, "https://github.com/org/app", ok) is False
    assert post_job_status(client(gh), "https://gitlab.com/org/app", ok) is False
    assert post_job_status(client(gh), None, ok) is False
    assert (
        post_job_status(
            client(gh), "https://github.com/org/app", _state(Phase.SUCCEEDED, commit=None)
        )
        is False
    )
    assert gh.requests == []


def test_the_fake_refuses_what_github_documents_as_invalid() -> None:
    """The fake's checks are real: each broken request is answered and recorded."""
    import urllib.error
    import urllib.request

    good_headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    cases = [
        (
            "POST",
            f"/repos/o/r/statuses/{SHA}",
            {**good_headers, "Accept": "application/json"},
            {"state": "success"},
            400,
        ),
        (
            "POST",
            f"/repos/o/r/statuses/{SHA}",
            {**good_headers, "Authorization": "Bearer x"},
            {"state": "success"},
            401,
        ),
        (
            "POST",
            f"/repos/o/r/statuses/{SHA}",
            {**good_headers, "X-GitHub-Api-Version": "1999-01-01"},
            {"state": "success"},
            400,
        ),
        ("POST", f"/repos/o/r/statuses/{SHA}", good_headers, {"state": "done"}, 422),
        (
            "POST",
            f"/repos/o/r/statuses/{SHA}",
            good_headers,
            {"state": "success", "description": "x" * 141},
            422,
        ),
        ("POST", f"/repos/o/r/statuses/{SHA}", good_headers, {"state": "success", "extra": 1}, 422),
        ("POST", "/repos/o/r/statuses/main", good_headers, {"state": "success"}, 422),
        ("PUT", f"/repos/o/r/statuses/{SHA}", good_headers, {"state": "success"}, 404),
        ("POST", f"/repos/o/r/commits/{SHA}", good_headers, {"state": "success"}, 404),
    ]
    with fake_github(TOKEN) as fake:
        for method, path, headers, body, expected in cases:
            request = urllib.request.Request(
                fake.url + path, data=json.dumps(body).encode(), method=method, headers=headers
            )
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(request, timeout=5)
            assert err.value.code == expected, (method, path, body)
        assert len(fake.violations) == len(cases)
        assert fake.statuses == []
        request = urllib.request.Request(
            fake.url + f"/repos/o/r/statuses/{SHA}",
            data=json.dumps({"state": "success", "context": "c"}).encode(),
            method="POST",
            headers=good_headers,
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 201
            assert response.headers["x-ratelimit-remaining"] == "5000"
            assert json.load(response)["state"] == "success"
