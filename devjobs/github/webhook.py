"""GitHub webhook deliveries that ask to re-run jobs: verified, parsed, never acted on twice.

Public API:
    WebhookReceiver(secret, guard, *, app_id=None, max_body=MAX_BODY)
        .receive(headers, body) -> Outcome         the whole decision for one delivery
        .release(outcome)                          forget its delivery id (the re-run
                                                   could not be started; a redelivery may)
    Outcome(status, reason, request=None)          the HTTP status to answer, and why
    RerunRequest(delivery, event, repo, head_sha, installation_id, source, job,
                 check_run_id)                     `.whole_suite` when source/job are None
    verify_signature(secret, body, header) -> None    raises WebhookRefused
    parse_rerun(event, delivery, body) -> RerunRequest | None   (None: nothing to do)
    WebhookRefused(status, reason)
    ReplayGuard                                    Protocol: claim(id) -> bool, release(id)
    MemoryReplayGuard(*, ttl, max_entries, clock)  in-process; the cluster-backed one comes
                                                   with the controller
    webhook_handler(receiver, on_rerun, *, path) -> a BaseHTTPRequestHandler class
    MAX_BODY                                       1 MiB

Why this order: size first (nothing large is read), then the signature (nothing unsigned
is parsed, logged in detail or remembered), then the payload, and only a delivery that
would act claims its id, so refused ones leave no trace but a log line. The signature is
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the webhook secret>`,
compared with `hmac.compare_digest`. GitHub caps payloads at 25 MB; the deliveries acted
on are far smaller, and 1 MiB still holds a `check_run` event carrying the largest
summary and text GitHub allows (2 x 65,535 characters, even JSON-escaped), so anything
larger is refused before it is read.

Status codes answered (GitHub only records them; it does not retry):
    202  a re-run was requested and handed on
    200  signed and well-formed, but nothing to do (ping, other events and actions)
    400  malformed: missing X-GitHub-Event/X-GitHub-Delivery, not a JSON object, a
         missing or invalid field, a check run not named devjobs/<source>/<job>, or
         one of another App
    401  unsigned: no X-Hub-Signature-256
    403  badly signed: the signature is not sha256=<64 hex> or does not match
    404  another path; 405  another method than POST
    409  replayed: this X-GitHub-Delivery was already acted on
    411  no Content-Length; 413  larger than `max_body`
    415  not application/json (set the webhook's content type to application/json)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, Protocol

from devjobs.errors import DevjobsError
from devjobs.github.checks import parse_check_run_name

MAX_BODY = 1024 * 1024
REPLAY_TTL = 4 * 24 * 3600.0
"""Seconds a delivery id is remembered: GitHub lets deliveries of the last 3 days be
redelivered, plus a day of margin."""
REPLAY_MAX = 100_000

log = logging.getLogger("devjobs.github.webhook")

_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_EVENT = re.compile(r"^[a-z_]{1,64}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]+$")


class WebhookRefused(Exception):
    """A delivery refused, with the 4xx status to answer and the reason in words."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class RerunRequest:
    """Re-run one job (`check_run`) or every devjobs job (`check_suite`) of a commit."""

    delivery: str
    event: Literal["check_run", "check_suite"]
    repo: str
    head_sha: str
    installation_id: int | None
    source: str | None = None
    job: str | None = None
    check_run_id: int | None = None

    @property
    def whole_suite(self) -> bool:
        return self.source is None


@dataclass(frozen=True)
class Outcome:
    status: int
    reason: str
    request: RerunRequest | None = None


class ReplayGuard(Protocol):
    """Remembers delivery ids that were acted on."""

    def claim(self, delivery: str) -> bool:
        """True the first time `delivery` is claimed (atomically), False after."""
        ...

    def release(self, delivery: str) -> None:
        """Forget `delivery`: what it asked for did not happen."""
        ...


class MemoryReplayGuard:
    """A process's memory of delivery ids, for `ttl` seconds and at most `max_entries`
    (the oldest are forgotten first). Enough for one controller replica."""

    def __init__(
        self,
        *,
        ttl: float = REPLAY_TTL,
        max_entries: int = REPLAY_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max(1, max_entries)
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, delivery: str) -> bool:
        now = self._clock()
        with self._lock:
            for old, at in list(self._seen.items()):
                if now - at < self._ttl and len(self._seen) < self._max:
                    break
                del self._seen[old]
            if delivery in self._seen:
                return False
            self._seen[delivery] = now
            return True

    def release(self, delivery: str) -> None:
        with self._lock:
            self._seen.pop(delivery, None)

    def __len__(self) -> int:
        return len(self._seen)


def verify_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """Raise WebhookRefused unless `header` is the HMAC-SHA256 of `body` with `secret`."""
    if not header:
        raise WebhookRefused(401, "unsigned: no X-Hub-Signature-256 header")
    match = _SIGNATURE.match(header.strip())
    if match is None:
        raise WebhookRefused(403, "badly signed: X-Hub-Signature-256 is not sha256=<64 hex>")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match[1].lower()):
        raise WebhookRefused(403, "badly signed: X-Hub-Signature-256 does not match the body")


def _field(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise WebhookRefused(400, f"malformed: {path} is missing")
        value = value[part]
    return value


def _int(obj: Mapping[str, Any], path: str) -> int:
    value = _field(obj, path)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise WebhookRefused(400, f"malformed: {path} is not a positive integer")
    return value


def _str(obj: Mapping[str, Any], path: str, pattern: re.Pattern[str], what: str) -> str:
    value = _field(obj, path)
    if not isinstance(value, str) or not pattern.match(value):
        raise WebhookRefused(400, f"malformed: {path} is not {what}")
    return value


def parse_rerun(
    event: str, delivery: str, body: bytes, *, app_id: int | None = None
) -> RerunRequest | None:
    """The re-run a verified delivery asks for; None when it asks for nothing devjobs
    does (another event or action). Raises WebhookRefused(400) naming what is wrong."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookRefused(400, "malformed: the body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "malformed: the body is not a JSON object")
    if event not in ("check_run", "check_suite"):
        return None
    action = payload.get("action")
    if not isinstance(action, str):
        raise WebhookRefused(400, "malformed: action is missing")
    if action != "rerequested":
        return None
    repo = _str(payload, "repository.full_name", _REPO, "an owner/name repository")
    installation = None
    if "installation" in payload:
        installation = _int(payload, "installation.id")
    head_sha = _str(payload, f"{event}.head_sha", _SHA, "a full commit SHA")
    owner_app = _int(payload, f"{event}.app.id")
    if app_id is not None and owner_app != app_id:
        raise WebhookRefused(400, f"malformed: the {event} is App {owner_app}'s, not {app_id}'s")
    if event == "check_suite":
        return RerunRequest(delivery, "check_suite", repo, head_sha, installation)
    name = _field(payload, "check_run.name")
    named = parse_check_run_name(name) if isinstance(name, str) else None
    if named is None:
        raise WebhookRefused(400, "malformed: check_run.name is not devjobs/<source>/<job>")
    run_id = _int(payload, "check_run.id")
    return RerunRequest(
        delivery, "check_run", repo, head_sha, installation, named[0], named[1], run_id
    )


class WebhookReceiver:
    """Everything between the HTTP server and the controller's Rerun."""

    def __init__(
        self,
        secret: bytes | str,
        guard: ReplayGuard,
        *,
        app_id: int | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise DevjobsError("github webhook", "no webhook secret given")
        self._secret = key
        self._guard = guard
        self._app_id = app_id
        self.max_body = max_body

    def __repr__(self) -> str:
        return f"WebhookReceiver(app_id={self._app_id}, secret=<redacted>)"

    def receive(self, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Decide one delivery. Refusals are logged (status, reason, delivery id; never
        the body or signature) and leave nothing else behind."""
        lower = {k.lower(): v for k, v in headers.items()}
        delivery = lower.get("x-github-delivery", "")
        try:
            request = self._decide(lower, body)
        except WebhookRefused as refused:
            log.warning(
                "webhook delivery %s refused: %d %s",
                _shown(delivery),
                refused.status,
                refused.reason,
            )
            return Outcome(refused.status, refused.reason)
        if request is None:
            return Outcome(200, "nothing to do for this event")
        log.info(
            "webhook delivery %s: re-run %s at %s in %s",
            delivery,
            f"{request.source}/{request.job}" if request.source else "the suite",
            request.head_sha,
            request.repo,
        )
        return Outcome(202, "re-run requested", request)

    def release(self, outcome: Outcome) -> None:
        if outcome.request is not None:
            self._guard.release(outcome.request.delivery)

    def _decide(self, headers: Mapping[str, str], body: bytes) -> RerunRequest | None:
        if len(body) > self.max_body:
            raise WebhookRefused(413, f"oversized: more than {self.max_body:,} bytes")
        verify_signature(self._secret, body, headers.get("x-hub-signature-256"))
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise WebhookRefused(
                415, "not application/json: set the webhook's content type to application/json"
            )
        event = headers.get("x-github-event", "")
        delivery = headers.get("x-github-delivery", "")
        if not _EVENT.match(event):
            raise WebhookRefused(400, "malformed: X-GitHub-Event is missing or invalid")
        if not _DELIVERY.match(delivery):
            raise WebhookRefused(400, "malformed: X-GitHub-Delivery is missing or invalid")
        request = parse_rerun(event, delivery, body, app_id=self._app_id)
        if request is not None and not self._guard.claim(delivery):
            raise WebhookRefused(409, "replayed: this delivery was already acted on")
        return request


def _shown(delivery: str) -> str:
    """A delivery id as it may appear in a log line, whatever the sender put there."""
    return delivery if _DELIVERY.match(delivery) else repr(delivery[:40])


def webhook_handler(
    receiver: WebhookReceiver,
    on_rerun: Callable[[RerunRequest], None],
    *,
    path: str = "/github/webhook",
) -> type[BaseHTTPRequestHandler]:
    """An http.server handler class serving the webhook at `path`: refuses a body over
    `receiver.max_body` from its Content-Length before reading it, then answers
    `receiver.receive`'s status as JSON. `on_rerun` starting nothing (raising) answers
    500 and releases the delivery id, so GitHub's Redeliver can try again."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10  # a slow sender cannot hold a thread for long

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

        def _answer(self, outcome: Outcome) -> None:
            data = json.dumps({"status": outcome.status, "reason": outcome.reason}).encode()
            self.send_response(outcome.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if outcome.status >= 400:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != path:
                self._answer(Outcome(404, "not the webhook path"))
                return
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                self._answer(Outcome(411, "a Content-Length is required"))
                return
            try:
                length = int(length_header)
                if length < 0:
                    raise ValueError
            except ValueError:
                self._answer(Outcome(400, "malformed: Content-Length"))
                return
            if length > receiver.max_body:
                log.warning("webhook delivery refused: 413 oversized (%d bytes)", length)
                self._answer(Outcome(413, f"oversized: more than {receiver.max_body:,} bytes"))
                return
            body = self.rfile.read(length)
            outcome = receiver.receive(dict(self.headers.items()), body)
            if outcome.request is not None:
                try:
                    on_rerun(outcome.request)
                except Exception:
                    log.exception(
                        "webhook delivery %s: the re-run failed", outcome.request.delivery
                    )
                    receiver.release(outcome)
                    outcome = Outcome(500, "the re-run could not be started")
            self._answer(outcome)

        def _not_allowed(self) -> None:
            self._answer(Outcome(405, "only POST"))

        do_GET = _not_allowed
        do_PUT = _not_allowed
        do_PATCH = _not_allowed
        do_DELETE = _not_allowed

    return Handler
