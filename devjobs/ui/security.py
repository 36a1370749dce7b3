"""Pure request checks of the Jobs view: no I/O, so each is unit-tested on its own.

- `host_allowed`: the `Host` header must name the server's own address (a page on another
  site that resolves its name to 127.0.0.1 — DNS rebinding — sends its own name);
- `StartToken`: the random token made at start (local mode), compared in constant time;
- `csrf_token` / `csrf_valid`: a per-session token (HMAC of the session), required on
  every POST in a header or form field;
- `origin_allowed`: a request from another origin is refused unless `--cors-origin`
  names it;
- `SECURITY_HEADERS`: a strict Content-Security-Policy (scripts and styles from this
  server only, no inline script, nothing framed), no referrer to other sites (the start token is in
  the first URL; `same-origin`, not `no-referrer`, which makes browsers send `Origin: null`
  on the sign-in form's POST), no MIME sniffing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from urllib.parse import urlsplit

SESSION_COOKIE = "devjobs_session"
"""Local mode: the start token, once exchanged from the URL."""
TOKEN_COOKIE = "devjobs_token"
"""Cluster mode: the viewer's bearer token from the sign-in form."""
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def host_allowed(host: str | None, allowed: Collection[str]) -> bool:
    """Whether the `Host` header is exactly one of the server's own addresses."""
    return host is not None and host.lower() in {a.lower() for a in allowed}


def own_hosts(address: str, port: int) -> tuple[str, ...]:
    """The `Host` values a browser sends for the server at `address:port` (an IPv6
    address in brackets)."""
    shown = f"[{address}]" if ":" in address else address
    return (f"{shown}:{port}",)


@dataclass(frozen=True)
class StartToken:
    """The local server's secret: in the printed URL once, then in an HttpOnly cookie."""

    value: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.value.encode())


def session_id(credential: str) -> str:
    """A stable id of a session's credential (start token or bearer token), never the
    credential itself."""
    return hashlib.sha256(credential.encode()).hexdigest()


def csrf_token(secret: bytes, session: str) -> str:
    """The CSRF token of a session: an HMAC of its id under the server's secret."""
    return hmac.new(secret, f"csrf\0{session}".encode(), hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, session: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given, csrf_token(secret, session))


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL or Origin header value ('' when it has none)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(origin: str | None, own: Collection[str], cors: Collection[str]) -> bool:
    """A request without an Origin (same-origin GETs, curl) passes; one from the server's
    own origin or a `--cors-origin` passes; any other origin (also `null`) does not."""
    if origin is None:
        return True
    value = origin.lower()
    return value in {o.lower() for o in own} or value in {o.lower().rstrip("/") for o in cors}


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
