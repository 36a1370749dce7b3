"""A fake of GitHub's documented commit statuses endpoint, on 127.0.0.1, for tests.

It is a fake of the documented contract, not GitHub: `POST /repos/{owner}/{repo}/statuses/{sha}`
answers 201 with the created status; every request is checked (method, path, the
`Authorization: Bearer`, `Accept: application/vnd.github+json` and `X-GitHub-Api-Version`
headers, a JSON body with only `state` (pending|success|failure|error), `target_url`,
`description` (<= 140 characters) and `context`). A request that breaks the contract gets
GitHub's answer for it (401, 404, 400 or 422) and is also recorded in `violations`, so a
test can assert the client never sent one. Scripted responses (`fail_next`) let tests
reproduce 5xx and rate-limit answers with their documented headers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = re.compile(
    r"^/repos/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+)/statuses/(?P<sha>[^/]+)$"
)
STATES = {"pending", "success", "failure", "error"}
FIELDS = {"state", "target_url", "description", "context"}
API_VERSIONS = {"2022-11-28"}


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


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

    def fail_next(
        self, status: int, headers: dict[str, str] | None = None, message: str = ""
    ) -> None:
        """Answer the next request (in order) with this instead of processing it."""
        self.scripted.append(Scripted(status, headers or {}, {"message": message or "scripted"}))


@contextmanager
def fake_github(token: str) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(token=token)

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
                scripted = fake.scripted.pop(0) if fake.scripted else None
            if scripted is not None:
                self._reply(scripted.status, scripted.body, scripted.headers)
                return
            match = PATH.match(self.path)
            if match is None:
                self._violation(404, "Not Found: unknown path")
                return
            if self.command != "POST":
                self._violation(404, f"Not Found: {self.command} is not documented for this path")
                return
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._violation(401, "Bad credentials")
                return
            if self.headers.get("Accept") != "application/vnd.github+json":
                self._violation(
                    400,
                    f"Accept must be application/vnd.github+json: {self.headers.get('Accept')!r}",
                )
                return
            if self.headers.get("X-GitHub-Api-Version") not in API_VERSIONS:
                self._violation(
                    400,
                    f"bad X-GitHub-Api-Version {self.headers.get('X-GitHub-Api-Version')!r}",
                )
                return
            if not re.fullmatch(r"[0-9a-f]{40}", match["sha"]):
                self._violation(422, f"No commit found for SHA: {match['sha']}")
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._violation(400, "Problems parsing JSON")
                return
            problems = _check_body(body)
            if problems:
                self._violation(422, "Validation Failed: " + "; ".join(problems))
                return
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


def _check_body(body: Any) -> list[str]:
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
