"""A fake of GitHub's REST API and webhooks, on 127.0.0.1, for tests.

GitHub cannot be reached from here, so this stands in for it: a fake of the documented
contract, not GitHub, and it checks every request against that contract. It implements:

- commit statuses: `POST /repos/{owner}/{repo}/statuses/{sha}` answers 201; a JSON body
  with only `state` (pending|success|failure|error), `target_url`, `description`
  (<= 140 characters) and `context`; authenticated by the PAT given to `fake_github` or
  by a live installation token;
- a GitHub App (`app_id=`): the fake makes the App's key pair, as GitHub does
  (`app_private_key_pem`). `POST /app/installations/{id}/access_tokens` takes only an
  App JWT, verified against the App's public key (RS256, integer `iat` not in the future,
  `exp` in the future and at most 10 minutes ahead, `iss` the app id) and answers 201
  with a `token` and its `expires_at` (`token_ttl`, one hour). The clock is the test's
  (`clock=`), so tests can let tokens expire; `revoke` ends one at once;
- check runs: `POST /repos/{o}/{r}/check-runs` (201) and `PATCH .../check-runs/{id}`
  (200), only with an installation token of an installation that has the repository
  (a PAT gets 403 as on GitHub). Field rules: documented fields only; `name` and a
  40-hex `head_sha` required on create; `status` queued|in_progress|completed (the
  Actions-only ones refused); `conclusion` one of GitHub's and required with
  `completed`, never with another status; ISO 8601 UTC times, `completed_at` not before
  `started_at`; `output.title` and `output.summary` required with `output`, summary and
  text at most 65,535 characters; at most 50 annotations per request, each with `path`,
  `start_line` <= `end_line`, columns only on one line, `annotation_level`
  notice|warning|failure, `message` and `raw_details` at most 64 KB, `title` at most
  255 characters. Annotations accumulate over updates, as GitHub documents. Stricter than
  GitHub on two points, so the client always says what it means: `completed_at` is
  required with a conclusion (GitHub would use now), and `name` is limited to 255
  characters (GitHub documents no limit);
- webhooks: `sign` and `deliver` send a delivery signed with the secret as GitHub does
  (`X-Hub-Signature-256: sha256=HMAC-SHA256(secret, raw body)`, `X-GitHub-Event`,
  `X-GitHub-Delivery`), and `check_run_rerequested` / `check_suite_rerequested` build
  the documented payloads.

A request that breaks the contract gets GitHub's answer for it (400, 401, 403, 404 or
422) and is also recorded in `violations`, so a test can assert the client never sent
one. Scripted responses (`fail_next`, `rate_limit_next`) reproduce 5xx and rate-limit
answers with their documented headers, optionally only for requests matching a string.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

STATUS_PATH = re.compile(
    r"^/repos/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+)/statuses/(?P<sha>[^/]+)$"
)
PATH = STATUS_PATH  # the name older tests know
TOKEN_PATH = re.compile(r"^/app/installations/(?P<id>[0-9]+)/access_tokens$")
CHECKS_PATH = re.compile(
    r"^/repos/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+)/check-runs(?:/(?P<id>[0-9]+))?$"
)
STATES = {"pending", "success", "failure", "error"}
FIELDS = {"state", "target_url", "description", "context"}
API_VERSIONS = {"2022-11-28"}

CHECK_FIELDS = {
    "name",
    "head_sha",
    "details_url",
    "external_id",
    "status",
    "started_at",
    "conclusion",
    "completed_at",
    "output",
    "actions",
}
CHECK_STATUSES = {"queued", "in_progress", "completed"}
ACTIONS_ONLY_STATUSES = {"waiting", "requested", "pending"}
CONCLUSIONS = {
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "timed_out",
}
OUTPUT_FIELDS = {"title", "summary", "text", "annotations", "images"}
ANNOTATION_FIELDS = {
    "path",
    "start_line",
    "end_line",
    "start_column",
    "end_column",
    "annotation_level",
    "message",
    "title",
    "raw_details",
}
ANNOTATION_LEVELS = {"notice", "warning", "failure"}
MAX_TEXT = 65535
MAX_ANNOTATIONS = 50
MAX_ANNOTATION_BYTES = 64 * 1024
MAX_TITLE = 255
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


class FakeClock:
    """The test's clock (epoch seconds), shared by the fake and the client under test."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """An injected sleep: recorded and added to the clock, never slept."""
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    match: str | None = None
    """Only a request whose `METHOD path` contains this is answered by it."""


@dataclass
class Installation:
    id: int
    repos: set[str] | None = None
    """`owner/name`s it may use (lower case); None: all."""


@dataclass
class FakeGitHub:
    token: str
    url: str = ""
    statuses: list[dict[str, Any]] = field(default_factory=list)
    """Accepted statuses, with `repo` and `sha` added, in the order received."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every request: method, path, headers (Authorization redacted), body text."""
    violations: list[str] = field(default_factory=list)
    scripted: list[Scripted] = field(default_factory=list)
    rate_remaining: int = 5000
    lock: threading.Lock = field(default_factory=threading.Lock)
    app_id: int | None = None
    app_private_key_pem: bytes = field(default=b"", repr=False)
    app_public_key_pem: bytes = b""
    clock: Callable[[], float] = time.time
    token_ttl: float = 3600.0
    installations: dict[int, Installation] = field(default_factory=dict)
    tokens: dict[str, tuple[int, float]] = field(default_factory=dict, repr=False)
    """Issued installation tokens: token -> (installation id, expires at)."""
    issued: list[int] = field(default_factory=list)
    """Installation ids, one per token issued, in order."""
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Check runs as they stand: the merged fields plus `repo`, `id` and every
    annotation received (`output.annotations`, accumulated)."""
    check_run_requests: list[dict[str, Any]] = field(default_factory=list)
    """Accepted check-run requests: method, id, repo, body (decoded)."""

    def fail_next(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        message: str = "",
        *,
        match: str | None = None,
    ) -> None:
        """Answer the next request (in order; only one matching `match`, if given) with
        this instead of processing it."""
        body = {"message": message or "scripted"}
        self.scripted.append(Scripted(status, headers or {}, body, match))

    def rate_limit_next(
        self, *, retry_after: int | None = None, match: str | None = None, status: int = 403
    ) -> None:
        """Answer one request with GitHub's rate-limit answer: a secondary limit with
        `retry-after` when given, else the primary limit, exhausted until a reset 30 s
        after the fake's clock."""
        if retry_after is not None:
            self.fail_next(
                status,
                {"retry-after": str(retry_after)},
                "You have exceeded a secondary rate limit",
                match=match,
            )
        else:
            reset = int(self.clock()) + 30
            self.fail_next(
                status,
                {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
                "API rate limit exceeded for installation",
                match=match,
            )

    def add_installation(self, installation_id: int, repos: set[str] | None = None) -> None:
        self.installations[installation_id] = Installation(
            installation_id, {r.lower() for r in repos} if repos is not None else None
        )

    def revoke(self, token: str | None = None) -> None:
        """End one installation token (or all) at once, as revoking it on GitHub does."""
        with self.lock:
            if token is None:
                self.tokens.clear()
            else:
                self.tokens.pop(token, None)

    def live_tokens(self) -> list[str]:
        now = self.clock()
        return [t for t, (_, expires) in self.tokens.items() if expires > now]


@contextmanager
def fake_github(
    token: str = "",
    *,
    app_id: int | None = None,
    clock: Callable[[], float] | None = None,
    installations: Mapping[int, set[str] | None] | None = None,
) -> Iterator[FakeGitHub]:
    """Start the fake; with `app_id`, also a GitHub App with its own key pair."""
    fake = FakeGitHub(token=token)
    if clock is not None:
        fake.clock = clock
    if app_id is not None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fake.app_id = app_id
        fake.app_private_key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # GitHub's: BEGIN RSA PRIVATE KEY
            serialization.NoEncryption(),
        )
        fake.app_public_key_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    for installation_id, repos in (installations or {}).items():
        fake.add_installation(installation_id, repos)

    class Refused(Exception):
        def __init__(self, status: int, text: str) -> None:
            super().__init__(text)
            self.status = status
            self.text = text

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet test output

        def _reply(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            reset = int(time.time()) + 3600
            base = {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": str(fake.rate_remaining),
                "x-ratelimit-used": str(5000 - fake.rate_remaining),
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core",
            }
            base.update(headers or {})
            for name, value in base.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _violation(self, status: int, text: str) -> None:
            with fake.lock:
                fake.violations.append(f"{self.command} {self.path}: {text}")
            self._reply(
                status, {"message": text, "documentation_url": "https://docs.github.com/rest"}
            )

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            if "authorization" in headers:
                headers["authorization"] = "<redacted>"
            with fake.lock:
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": headers,
                        "body": raw.decode("utf-8", "replace"),
                    }
                )
                scripted = None
                here = f"{self.command} {self.path}"
                for i, candidate in enumerate(fake.scripted):
                    if candidate.match is None or candidate.match in here:
                        scripted = fake.scripted.pop(i)
                        break
            if scripted is not None:
                self._reply(scripted.status, scripted.body, scripted.headers)
                return
            try:
                if match := STATUS_PATH.match(self.path):
                    self._status(match, raw)
                elif match := TOKEN_PATH.match(self.path):
                    self._access_token(int(match["id"]))
                elif match := CHECKS_PATH.match(self.path):
                    self._check_run(match, raw)
                else:
                    raise Refused(404, "Not Found: unknown path")
            except Refused as refused:
                self._violation(refused.status, refused.text)

        # --- shared checks -----------------------------------------------------------

        def _accept(self) -> None:
            if self.headers.get("Accept") != "application/vnd.github+json":
                raise Refused(
                    400,
                    f"Accept must be application/vnd.github+json: {self.headers.get('Accept')!r}",
                )

        def _api_version(self) -> None:
            if self.headers.get("X-GitHub-Api-Version") not in API_VERSIONS:
                raise Refused(
                    400,
                    f"bad X-GitHub-Api-Version {self.headers.get('X-GitHub-Api-Version')!r}",
                )

        def _bearer(self) -> str | None:
            value = self.headers.get("Authorization") or ""
            scheme, _, credential = value.partition(" ")
            if scheme.lower() not in ("bearer", "token") or not credential:
                return None
            return credential

        def _installation_for(self, owner: str, repo: str) -> int | None:
            """The installation of a live installation token, or None for another
            credential; an expired or unknown token is refused with 401."""
            bearer = self._bearer()
            if bearer is None:
                raise Refused(401, "Requires authentication")
            with fake.lock:
                issued = fake.tokens.get(bearer)
            if issued is None:
                if bearer == fake.token:
                    return None
                raise Refused(401, "Bad credentials")
            installation_id, expires = issued
            if fake.clock() >= expires:
                raise Refused(401, "Bad credentials")
            installation = fake.installations.get(installation_id)
            if installation is None:
                raise Refused(401, "Bad credentials")
            if installation.repos is not None and f"{owner}/{repo}".lower() not in (
                installation.repos
            ):
                raise Refused(404, "Not Found")
            return installation_id

        def _json(self, raw: bytes) -> Any:
            try:
                return json.loads(raw)
            except ValueError:
                raise Refused(400, "Problems parsing JSON") from None

        # --- commit statuses ---------------------------------------------------------

        def _status(self, match: re.Match[str], raw: bytes) -> None:
            if self.command != "POST":
                raise Refused(404, f"Not Found: {self.command} is not documented for this path")
            bearer = self._bearer()
            if bearer != fake.token or not fake.token:
                self._installation_for(match["owner"], match["repo"])
            self._accept()
            self._api_version()
            if not re.fullmatch(r"[0-9a-f]{40}", match["sha"]):
                raise Refused(422, f"No commit found for SHA: {match['sha']}")
            body = self._json(raw)
            problems = _check_status_body(body)
            if problems:
                raise Refused(422, "Validation Failed: " + "; ".join(problems))
            with fake.lock:
                status = {
                    "id": len(fake.statuses) + 1,
                    "url": f"{fake.url}{self.path}",
                    "state": body["state"],
                    "description": body.get("description"),
                    "target_url": body.get("target_url"),
                    "context": body.get("context", "default"),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "repo": f"{match['owner']}/{match['repo']}",
                    "sha": match["sha"],
                }
                fake.statuses.append(status)
            self._reply(201, status)

        # --- the App -----------------------------------------------------------------

        def _access_token(self, installation_id: int) -> None:
            if self.command != "POST":
                raise Refused(404, f"Not Found: {self.command} is not documented for this path")
            if fake.app_id is None:
                raise Refused(404, "Not Found: this fake has no App")
            bearer = self._bearer()
            if bearer is None:
                raise Refused(401, "A JSON web token could not be decoded")
            problem = _check_app_jwt(bearer, fake.app_public_key_pem, fake.app_id, fake.clock())
            if problem:
                raise Refused(401, problem)
            self._accept()
            self._api_version()
            if installation_id not in fake.installations:
                raise Refused(404, "Not Found: no such installation of this App")
            token = "ghs_" + secrets.token_hex(18)
            expires = fake.clock() + fake.token_ttl
            with fake.lock:
                fake.tokens[token] = (installation_id, expires)
                fake.issued.append(installation_id)
            self._reply(
                201,
                {
                    "token": token,
                    "expires_at": _iso(expires),
                    "permissions": {"checks": "write", "statuses": "write", "contents": "read"},
                    "repository_selection": "all",
                },
            )

        # --- check runs --------------------------------------------------------------

        def _check_run(self, match: re.Match[str], raw: bytes) -> None:
            run_id = int(match["id"]) if match["id"] else None
            if (self.command, run_id is None) not in (("POST", True), ("PATCH", False)):
                raise Refused(404, f"Not Found: {self.command} is not documented for this path")
            owner, repo = match["owner"], match["repo"]
            if self._installation_for(owner, repo) is None:
                raise Refused(403, "You must authenticate via a GitHub App.")
            self._accept()
            self._api_version()
            body = self._json(raw)
            full = f"{owner}/{repo}".lower()
            with fake.lock:
                existing = fake.check_runs.get(run_id) if run_id is not None else None
                if run_id is not None and (existing is None or existing["repo"] != full):
                    raise Refused(404, "Not Found")
                problems = _check_check_run(body, create=run_id is None, existing=existing)
                if problems:
                    raise Refused(422, "Validation Failed: " + "; ".join(problems))
                if existing is None:
                    run_id = len(fake.check_runs) + 1
                    existing = {
                        "id": run_id,
                        "repo": full,
                        "status": "queued",
                        "conclusion": None,
                        "output": {"annotations": []},
                    }
                    fake.check_runs[run_id] = existing
                _merge(existing, body)
                fake.check_run_requests.append(
                    {"method": self.command, "id": run_id, "repo": full, "body": body}
                )
                answer = {k: v for k, v in existing.items() if k not in ("output", "repo")} | {
                    "output": {k: v for k, v in existing["output"].items() if k != "annotations"}
                    | {"annotations_count": len(existing["output"]["annotations"])}
                }
            self._reply(201 if self.command == "POST" else 200, answer)

        do_POST = _handle
        do_GET = _handle
        do_PUT = _handle
        do_PATCH = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_app_jwt(token: str, public_key: bytes, app_id: int, now: float) -> str:
    """GitHub's refusal message for a bad App JWT, or '' when it is good."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError:
        return "A JSON web token could not be decoded: signature verification failed"
    except jwt.PyJWTError as err:
        return f"A JSON web token could not be decoded: {err}"
    if header.get("alg") != "RS256":
        return "A JSON web token could not be decoded: alg must be RS256"
    iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
    if not isinstance(iat, int) or isinstance(iat, bool) or iat > now:
        return (
            "'Issued at' claim ('iat') must be an Integer representing the time that the "
            "assertion was issued"
        )
    if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now:
        return (
            "'Expiration time' claim ('exp') must be a numeric value representing the future "
            "time at which the assertion expires"
        )
    if exp > now + 600:
        return "'Expiration time' claim ('exp') is too far in the future"
    if str(iss) != str(app_id):
        return "'Issuer' claim ('iss') must be the App's id"
    return ""


def _check_status_body(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    problems = [f"unknown field {key!r}" for key in body if key not in FIELDS]
    if body.get("state") not in STATES:
        problems.append(f"state {body.get('state')!r} is not one of {sorted(STATES)}")
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 140):
        problems.append("description must be a string of at most 140 characters")
    if "context" in body and not isinstance(body["context"], str):
        problems.append("context must be a string")
    target = body.get("target_url")
    if target is not None and not (isinstance(target, str) and re.match(r"^https?://", target)):
        problems.append("target_url must be an http(s) URL")
    return problems


def _check_check_run(body: Any, *, create: bool, existing: dict[str, Any] | None) -> list[str]:
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    allowed = CHECK_FIELDS if create else CHECK_FIELDS - {"head_sha"}
    problems = [f"unknown field {key!r}" for key in body if key not in allowed]
    name = body.get("name")
    if create or "name" in body:
        if not isinstance(name, str) or not name.strip():
            problems.append("name is required and must be a non-empty string")
        elif len(name) > MAX_TITLE:
            problems.append(f"name is longer than {MAX_TITLE} characters")
    if create and not (
        isinstance(body.get("head_sha"), str) and re.fullmatch(r"[0-9a-f]{40}", body["head_sha"])
    ):
        problems.append("head_sha must be a full commit SHA")
    status = body.get("status")
    if status is not None and status not in CHECK_STATUSES:
        if status in ACTIONS_ONLY_STATUSES:
            problems.append(f"status {status!r} can only be set by GitHub Actions")
        else:
            problems.append(f"status {status!r} is not one of {sorted(CHECK_STATUSES)}")
    conclusion = body.get("conclusion")
    if conclusion is not None and conclusion not in CONCLUSIONS:
        problems.append(f"conclusion {conclusion!r} is not one of {sorted(CONCLUSIONS)}")
    if status == "completed" and conclusion is None:
        problems.append("conclusion is required when status is completed")
    if conclusion is not None and status not in (None, "completed"):
        problems.append(f"conclusion cannot be set with status {status!r}")
    if "completed_at" in body and conclusion is None:
        problems.append("conclusion is required when completed_at is given")
    if conclusion is not None and "completed_at" not in body:
        problems.append("completed_at is required with a conclusion (this fake's stricter rule)")
    for key in ("started_at", "completed_at"):
        value = body.get(key)
        if key in body and not (isinstance(value, str) and TIME.match(value)):
            problems.append(f"{key} must be an ISO 8601 UTC timestamp (YYYY-MM-DDTHH:MM:SSZ)")
    started = body.get("started_at") or (existing or {}).get("started_at")
    completed = body.get("completed_at")
    if (
        isinstance(started, str)
        and isinstance(completed, str)
        and TIME.match(started)
        and TIME.match(completed)
        and completed < started
    ):
        problems.append("completed_at is before started_at")
    details = body.get("details_url")
    if "details_url" in body and not (
        isinstance(details, str) and re.match(r"^https?://[^\s]+$", details)
    ):
        problems.append("details_url must be an http(s) URL")
    if "external_id" in body and not isinstance(body["external_id"], str):
        problems.append("external_id must be a string")
    if "output" in body:
        problems += _check_output(body["output"])
    return problems


def _check_output(output: Any) -> list[str]:
    if not isinstance(output, dict):
        return ["output must be an object"]
    problems = [f"unknown output field {key!r}" for key in output if key not in OUTPUT_FIELDS]
    for key in ("title", "summary"):
        if not isinstance(output.get(key), str):
            problems.append(f"output.{key} is required and must be a string")
    for key in ("summary", "text"):
        value = output.get(key)
        if key == "text" and value is not None and not isinstance(value, str):
            problems.append("output.text must be a string")
        if isinstance(value, str) and len(value) > MAX_TEXT:
            problems.append(f"output.{key} is longer than {MAX_TEXT} characters ({len(value)})")
    annotations = output.get("annotations", [])
    if not isinstance(annotations, list):
        return [*problems, "output.annotations must be an array"]
    if len(annotations) > MAX_ANNOTATIONS:
        problems.append(
            f"output.annotations has {len(annotations)} items; at most {MAX_ANNOTATIONS} "
            "per request"
        )
    for i, annotation in enumerate(annotations):
        problems += [f"output.annotations[{i}]: {p}" for p in _check_annotation(annotation)]
    return problems


def _check_annotation(a: Any) -> list[str]:
    if not isinstance(a, dict):
        return ["must be an object"]
    problems = [f"unknown field {key!r}" for key in a if key not in ANNOTATION_FIELDS]

    def integer(key: str) -> int | None:
        value = a.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    if not isinstance(a.get("path"), str) or not a["path"]:
        problems.append("path is required")
    start, end = integer("start_line"), integer("end_line")
    if start is None or end is None or start < 1 or end < start:
        problems.append("start_line and end_line are required integers, 1 <= start <= end")
    for key in ("start_column", "end_column"):
        if key in a:
            if integer(key) is None or (integer(key) or 0) < 1:
                problems.append(f"{key} must be a positive integer")
            elif start != end:
                problems.append(f"{key} is only allowed when start_line equals end_line")
    sc, ec = integer("start_column"), integer("end_column")
    if sc is not None and ec is not None and ec < sc:
        problems.append("end_column is before start_column")
    if a.get("annotation_level") not in ANNOTATION_LEVELS:
        problems.append(
            f"annotation_level {a.get('annotation_level')!r} is not one of "
            f"{sorted(ANNOTATION_LEVELS)}"
        )
    if not isinstance(a.get("message"), str) or not a["message"]:
        problems.append("message is required")
    for key in ("message", "raw_details"):
        value = a.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{key} must be a string")
        elif isinstance(value, str) and len(value.encode()) > MAX_ANNOTATION_BYTES:
            problems.append(f"{key} is larger than 64 KB")
    title = a.get("title")
    if title is not None and not (isinstance(title, str) and len(title) <= MAX_TITLE):
        problems.append(f"title must be a string of at most {MAX_TITLE} characters")
    return problems


def _merge(run: dict[str, Any], body: dict[str, Any]) -> None:
    """Apply a request as GitHub does: fields replace, a conclusion completes the run,
    annotations are appended."""
    for key, value in body.items():
        if key != "output":
            run[key] = value
    if body.get("conclusion") is not None:
        run["status"] = "completed"
    output = body.get("output")
    if isinstance(output, dict):
        kept = run["output"]["annotations"]
        run["output"] = {k: v for k, v in output.items() if k != "annotations"}
        run["output"]["annotations"] = kept + list(output.get("annotations", []))


# --- webhooks ----------------------------------------------------------------------------


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def deliver(
    url: str,
    event: str,
    payload: Mapping[str, Any] | bytes,
    *,
    secret: bytes,
    delivery: str | None = None,
    signature: str | None = None,
    unsigned: bool = False,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """POST one webhook delivery as GitHub does; returns (status, body text). The
    signature is computed with `secret` unless `signature` replaces it or `unsigned`."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/fake",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "1",
    }
    if not unsigned:
        sent["X-Hub-Signature-256"] = signature if signature is not None else sign(secret, body)
    sent.update(headers or {})
    request = urllib.request.Request(url, data=body, method="POST", headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def _repository(repo: str) -> dict[str, Any]:
    owner, _, name = repo.partition("/")
    return {
        "id": 1296269,
        "name": name,
        "full_name": repo,
        "owner": {"login": owner, "id": 1, "type": "Organization"},
        "private": False,
    }


def check_run_rerequested(
    repo: str, head_sha: str, name: str, *, app_id: int, installation_id: int, run_id: int = 1
) -> dict[str, Any]:
    """The documented `check_run` payload with action `rerequested` (the Re-run button)."""
    return {
        "action": "rerequested",
        "check_run": {
            "id": run_id,
            "name": name,
            "head_sha": head_sha,
            "status": "completed",
            "conclusion": "failure",
            "app": {"id": app_id, "slug": "devjobs"},
            "check_suite": {"id": 5, "head_sha": head_sha, "app": {"id": app_id}},
            "pull_requests": [],
        },
        "repository": _repository(repo),
        "installation": {"id": installation_id},
        "sender": {"login": "octocat", "id": 583231, "type": "User"},
    }


def check_suite_rerequested(
    repo: str, head_sha: str, *, app_id: int, installation_id: int, suite_id: int = 5
) -> dict[str, Any]:
    """The documented `check_suite` payload with action `rerequested` (Re-run all)."""
    return {
        "action": "rerequested",
        "check_suite": {
            "id": suite_id,
            "head_sha": head_sha,
            "head_branch": "feature",
            "status": "completed",
            "conclusion": "failure",
            "app": {"id": app_id, "slug": "devjobs"},
            "pull_requests": [],
        },
        "repository": _repository(repo),
        "installation": {"id": installation_id},
        "sender": {"login": "octocat", "id": 583231, "type": "User"},
    }
