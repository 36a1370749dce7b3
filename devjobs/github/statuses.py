"""GitHub commit statuses for jobs: `devjobs/<source>/<job>` on the commit that ran.

Public API:
    GitHubStatuses(token, *, api_url, target_url_template, timeout, max_retries,
                   max_wait, sleep, clock).set_status(repo, sha, *, context, state,
                   description, target_url=None) -> bool   (False: cached, not posted)
    github_repo(repository_url, *, host="github.com") -> "owner/name" | None
    status_context(source, job) -> "devjobs/<source>/<job>"
    state_for(phase) -> "pending" | "success" | "failure" | "error"
    description_for(state) -> str                      <= 140 characters
    post_job_status(statuses, repository_url, state) -> bool
                                 the whole step for one job; False when not applicable
    fill_target_url(template, repo, sha, context) -> str    `--target-url` filled in
    check_target_url(template)               DevjobsError for a field it does not fill

Implements the documented endpoint `POST /repos/{owner}/{repo}/statuses/{sha}` (201 on
success) through `devjobs.github.http`, which retries 5xx and transport errors with
bounded exponential backoff, and rate limits (403/429 with `retry-after`, or
`x-ratelimit-remaining: 0` until `x-ratelimit-reset`) by waiting as told, capped by
`max_wait`: a longer wait raises (`RetryLater`, a DevjobsError) so a controller can
requeue instead of blocking. The token is sent only in the Authorization header and
never appears in errors or reprs.
"""

from __future__ import annotations

import re
import string
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from devjobs.errors import DevjobsError
from devjobs.github.http import API_VERSION as API_VERSION
from devjobs.github.http import GitHubHTTP
from devjobs.kube.jobstate import JobState, Phase

StatusState = Literal["pending", "success", "failure", "error"]
STATES: frozenset[str] = frozenset({"pending", "success", "failure", "error"})
MAX_DESCRIPTION = 140
TEMPLATE_FIELDS = frozenset({"repo", "owner", "name", "sha", "context", "source", "job"})
_SHA = re.compile(r"^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$")
_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]+"


def status_context(source: str, job: str) -> str:
    return f"devjobs/{source}/{job}"


def state_for(phase: Phase) -> StatusState:
    """Cancelled is `error` (the job did not get to say pass or fail), not `failure`."""
    states: dict[Phase, StatusState] = {
        Phase.PENDING: "pending",
        Phase.RUNNING: "pending",
        Phase.SUCCEEDED: "success",
        Phase.FAILED: "failure",
        Phase.CANCELLED: "error",
    }
    return states[phase]


def description_for(state: JobState) -> str:
    """One line for the status list on a pull request, at most 140 characters."""
    if state.phase is Phase.SUCCEEDED and state.started and state.finished:
        seconds = max(0, int((state.finished - state.started).total_seconds()))
        text = f"Succeeded in {_duration(seconds)}"
    elif state.phase is Phase.FAILED:
        detail = state.message or state.reason
        # `job_state` ends the message with the container that failed; the Job's own
        # condition message before it names the pod and would push that past 140.
        culprit = [p.strip() for p in detail.split(";") if " exited with code " in p]
        if culprit:
            detail = culprit[-1]
        if state.exit_code is not None and f"code {state.exit_code}" not in detail:
            detail = f"exit code {state.exit_code}; {detail}"
        text = f"{state.reason}: {detail}" if state.reason != "Failed" else f"Failed: {detail}"
    else:
        text = state.phase.value if not state.message else f"{state.phase.value}: {state.message}"
    return _shorten(" ".join(text.split()), MAX_DESCRIPTION)


def github_repo(repository_url: str, *, host: str = "github.com") -> str | None:
    """`owner/name` of a GitHub repository URL (https, ssh, scp-like `git@host:o/r`),
    None for anything else (another host, a sub-path such as `/tree/main`)."""
    url = repository_url.strip()
    scp = re.fullmatch(rf"(?:[^@/\s]+@)?([^:/\s]+):(?!//)/?({_OWNER})/({_NAME})", url)
    if scp:
        found_host, owner, name = scp.groups()
    else:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
        if parsed.scheme not in ("https", "http", "ssh", "git") or parsed.query or parsed.fragment:
            return None
        found_host = parsed.hostname or ""
        match = re.fullmatch(rf"/({_OWNER})/({_NAME})/?", parsed.path)
        if not match:
            return None
        owner, name = match.groups()
    if found_host.lower() not in (host.lower(), f"www.{host.lower()}"):
        return None
    name = name.removesuffix(".git")
    if not name or name in (".", ".."):
        return None
    return f"{owner}/{name}"


class GitHubStatuses:
    """Posts commit statuses; one instance per token, kept for the life of the process so
    its cache can drop repeats (every reconcile would otherwise post the same status)."""

    def __init__(
        self,
        token: str,
        *,
        api_url: str = "https://api.github.com",
        target_url_template: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 4,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise DevjobsError("github", "no token given")
        if target_url_template is not None:
            _check_template(target_url_template)
        self._token = token
        self._http = GitHubHTTP(
            api_url=api_url,
            timeout=timeout,
            max_retries=max_retries,
            max_wait=max_wait,
            sleep=sleep,
            clock=clock,
        )
        self._api_url = self._http.api_url
        self._template = target_url_template
        self._posted: dict[tuple[str, str, str], tuple[str, str, str | None]] = {}

    def __repr__(self) -> str:
        return f"GitHubStatuses(api_url={self._api_url!r}, token=<redacted>)"

    def target_url(self, repo: str, sha: str, context: str) -> str | None:
        """The template filled in (values URL-quoted), or None without a template."""
        if self._template is None:
            return None
        return fill_target_url(self._template, repo, sha, context)

    def set_status(
        self,
        repo: str,
        sha: str,
        *,
        context: str,
        state: StatusState,
        description: str,
        target_url: str | None = None,
    ) -> bool:
        """Post the status unless this process already posted the same one for
        (repo, sha, context). Returns whether a request was made; raises DevjobsError
        on a refusal or when retries or the allowed wait are exhausted."""
        if not re.fullmatch(rf"{_OWNER}/{_NAME}", repo):
            raise DevjobsError("github", f"{repo!r} is not an owner/name repository")
        if not _SHA.match(sha):
            raise DevjobsError("github", f"{sha!r} is not a full commit SHA")
        if state not in STATES:
            raise DevjobsError("github", f"state {state!r} is not one of {sorted(STATES)}")
        description = _shorten(" ".join(description.split()), MAX_DESCRIPTION)
        url_value = target_url if target_url is not None else self.target_url(repo, sha, context)
        key = (repo.lower(), sha.lower(), context.lower())  # GitHub: context is case-insensitive
        wanted = (state, description, url_value)
        if self._posted.get(key) == wanted:
            return False
        body: dict[str, Any] = {"state": state, "description": description, "context": context}
        if url_value is not None:
            body["target_url"] = url_value
        path = f"/repos/{repo}/statuses/{sha}"
        self._post(path, body)
        self._posted[key] = wanted
        return True

    def _post(self, path: str, body: Mapping[str, Any]) -> None:
        self._http.request("POST", path, token=self._token, body=body, hint=_hint)


def _hint(status: int) -> str:
    if status == 401:
        return " (the token is invalid or expired)"
    if status in (403, 404):
        return (
            " (the token cannot write commit statuses to this repository: it needs the "
            "`repo:status` scope or `statuses: write` permission)"
        )
    if status == 422:
        return " (the commit does not exist in the repository, or the status is invalid)"
    return ""


def fill_target_url(template: str, repo: str, sha: str, context: str) -> str:
    """`--target-url`'s template (checked by `check_target_url`) filled in for one job,
    every value URL-quoted (`repo` keeps its `/`): commit statuses' `target_url`, and
    the `details_url` of `devjobs run`'s check runs."""
    owner, _, name = repo.partition("/")
    parts = context.split("/")
    source, job = (parts[1], parts[2]) if len(parts) == 3 else ("", "")
    values = {
        "repo": repo,
        "owner": owner,
        "name": name,
        "sha": sha,
        "context": context,
        "source": source,
        "job": job,
    }
    quoted = {k: urllib.parse.quote(v, safe="/" if k == "repo" else "") for k, v in values.items()}
    return template.format_map(quoted)


def check_target_url(template: str) -> None:
    """Raise DevjobsError when `template` names a field `fill_target_url` does not fill."""
    _check_template(template)


def _check_template(template: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise DevjobsError("github target URL template", str(err)) from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise DevjobsError(
            "github target URL template",
            f"unknown field(s) {sorted(unknown)}; known: {sorted(TEMPLATE_FIELDS)}",
        )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _duration(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def post_job_status(
    statuses: GitHubStatuses | None, repository_url: str | None, state: JobState
) -> bool:
    """Post `state` as the commit status of its job when that is possible: a client (a
    token) exists, the source is a GitHub repository and the Job recorded its commit.
    Returns whether a request was made (False also for a repeat the cache dropped)."""
    if statuses is None or not repository_url or not state.commit:
        return False
    repo = github_repo(repository_url)
    if repo is None:
        return False
    return statuses.set_status(
        repo,
        state.commit,
        context=status_context(state.source, state.job),
        state=state_for(state.phase),
        description=description_for(state),
    )


CONTROLLER_TOKEN_VARIABLES = ("DEVJOBS_GITHUB_TOKEN",)
"""The controller's token, from a Secret (`deploy/deployment.yaml`: secret
`devjobs-github`, key `token`, optional). Never a flag: flags show in `ps` and the pod."""
RUN_TOKEN_VARIABLES = ("DEVJOBS_GITHUB_TOKEN", "GITHUB_TOKEN")
"""Where `devjobs run` finds a token; the first one set wins."""


def from_environment(
    environ: Mapping[str, str],
    variables: Sequence[str],
    *,
    api_url: str = "https://api.github.com",
    target_url: str | None = None,
) -> GitHubStatuses | None:
    """A client when one of `variables` holds a token, else None. Short waits: a run
    waits for its jobs, a controller worker for the next Environment, not for GitHub (a
    rate limit longer than 10 s is reported, not slept through)."""
    token = next((environ[name].strip() for name in variables if environ.get(name, "").strip()), "")
    if not token:
        return None
    return GitHubStatuses(
        token, api_url=api_url, target_url_template=target_url, max_retries=2, max_wait=10.0
    )
