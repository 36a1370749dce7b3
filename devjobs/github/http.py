"""One GitHub REST request with the retries GitHub documents, shared by every client.

Public API:
    GitHubHTTP(*, api_url, timeout, max_retries, max_wait, sleep, clock)
        .request(method, path, *, token, body=None, hint=None) -> Response
        .api_url
    Response(status, headers, body)          body: the decoded JSON (or None)
    GitHubError(place, message, *, status)   refused (4xx) or gave up; `status` or None
    RetryLater(place, message, *, wait, status)
                                             a GitHubError to requeue after `wait` seconds

Why one module: commit statuses, check runs and the App's token exchange all need the
same handling, and getting it subtly different in each is how a client ends up sleeping
an hour inside a controller worker. 5xx and transport errors are retried with bounded
exponential backoff (1, 2, 4 ... s); rate limits (403/429 with `retry-after`, or
`x-ratelimit-remaining: 0` until `x-ratelimit-reset`, or a secondary-limit message) are
waited out as told. A wait longer than `max_wait`, or retries running out, raises
`RetryLater` with the wait instead of blocking. Stdlib only (urllib): a handful of small
JSON requests does not justify an HTTP dependency. The token is sent only in the
Authorization header and is replaced by `<redacted>` in every error.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devjobs.errors import DevjobsError

API_VERSION = "2022-11-28"
MAX_ERROR_BODY = 4096


class GitHubError(DevjobsError):
    """GitHub refused a request (`status` is its HTTP status), or it could not be reached
    (`status` None). Never carries a token: messages are redacted before raising."""

    def __init__(self, place: str, message: str, *, status: int | None = None) -> None:
        super().__init__(place, message)
        self.status = status


class RetryLater(GitHubError):
    """Not a refusal: try again in `wait` seconds (a rate limit longer than the client
    may block for, or retries exhausted on 5xx or transport errors)."""

    def __init__(self, place: str, message: str, *, wait: float, status: int | None = None) -> None:
        super().__init__(place, message, status=status)
        self.wait = wait


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: Any = field(repr=False)


class GitHubHTTP:
    """Sends requests to one API root; keeps no token, so one instance can serve
    several identities (a PAT, an App's JWT, installation tokens)."""

    def __init__(
        self,
        *,
        api_url: str = "https://api.github.com",
        timeout: float = 10.0,
        max_retries: int = 4,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._max_retries = max(0, max_retries)
        self._max_wait = max_wait
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:
        return f"GitHubHTTP(api_url={self.api_url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str,
        body: Mapping[str, Any] | None = None,
        hint: Callable[[int], str] | None = None,
    ) -> Response:
        """Send one request, retrying as the module says. Returns any 2xx answer; raises
        GitHubError on another refusal (with `hint(status)` appended), RetryLater when
        it should be tried again later."""
        data = json.dumps(body).encode() if body is not None else None
        where = f"{method} {path}"
        failures = 0
        while True:
            headers = {
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {token}",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "devjobs",
            }
            if data is not None:
                headers["Content-Type"] = "application/json"
            request = urllib.request.Request(
                self.api_url + path, data=data, method=method, headers=headers
            )
            status: int | None
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    raw = response.read()
                    answer = {k.lower(): v for k, v in response.headers.items()}
                    return Response(response.status, answer, _json(raw))
            except urllib.error.HTTPError as err:
                status = err.code
                answer = {k.lower(): v for k, v in err.headers.items()}
                message = _redact(_error_message(err), token)
                wait = self._rate_limit_wait(status, answer, message, failures)
                if wait is None and status < 500:
                    extra = hint(status) if hint is not None else ""
                    raise GitHubError(
                        "github", f"{where}: {status} {message}{extra}", status=status
                    ) from None
                reason = f"{status} {message}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                status, wait = None, None
                reason = _redact(str(getattr(err, "reason", err)), token)
            failures += 1
            if wait is None:
                wait = min(float(2 ** (failures - 1)), self._max_wait)
            if failures > self._max_retries:
                raise RetryLater(
                    "github",
                    f"{where}: gave up after {failures} attempts: {reason}",
                    wait=wait,
                    status=status,
                )
            if wait > self._max_wait:
                until = datetime.fromtimestamp(self._clock() + wait, UTC).strftime("%H:%M:%SZ")
                raise RetryLater(
                    "github",
                    f"{where}: rate limited until {until} ({wait:.0f}s, more than the "
                    f"{self._max_wait:.0f}s allowed to wait): {reason}",
                    wait=wait,
                    status=status,
                )
            self._sleep(wait)

    def _rate_limit_wait(
        self, status: int, headers: Mapping[str, str], message: str, failures: int
    ) -> float | None:
        """Seconds to wait when the response is a rate limit, else None. Follows GitHub's
        documented order: retry-after, then remaining=0 until reset, then at least a
        minute for a secondary limit without either, growing exponentially."""
        if status not in (403, 429):
            return None
        retry_after = str(headers.get("retry-after", "")) or None
        remaining = str(headers.get("x-ratelimit-remaining", ""))
        if retry_after is not None and retry_after.strip().isdigit():
            return float(retry_after)
        if remaining == "0":
            reset = str(headers.get("x-ratelimit-reset", ""))
            if reset.strip().isdigit():
                return max(1.0, float(reset) - self._clock() + 1)
            return 60.0 * float(2**failures)
        if status == 429 or "rate limit" in message.lower():
            return 60.0 * float(2**failures)
        return None


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _redact(text: str, token: str) -> str:
    return text.replace(token, "<redacted>") if token else text


def _error_message(err: urllib.error.HTTPError) -> str:
    """GitHub's `message` (plus validation `errors`), or the HTTP reason phrase."""
    try:
        raw = err.read(MAX_ERROR_BODY)
        payload = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        payload = {}
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        text = str(payload["message"])
        errors = payload.get("errors")
        if isinstance(errors, list) and errors:
            text += f" {json.dumps(errors)[:300]}"
        return text
    return str(err.reason)
