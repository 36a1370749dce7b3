"""Authenticate as a GitHub App: an RS256 JWT, exchanged for installation tokens.

Public API:
    GitHubApp(app_id, private_key, *, http=None, api_url, clock, refresh_before)
        GitHubApp.from_key_file(app_id, path, **kwargs)
        .jwt() -> str                         a fresh App JWT (iat now-60 s, exp now+9 min)
        .installation_token(installation_id) -> str   cached until `refresh_before`
                                              seconds before it expires
        .invalidate(installation_id, token=None)      drop the cached token (after a 401)
        .installation(installation_id) -> InstallationAuth
    InstallationAuth(app, installation_id)    `.token()` / `.invalidate(token)`: what a
                                              client of one installation needs
    TokenSource                               that protocol (also met by a fixed token)
    StaticToken(token)                        a TokenSource for a PAT, for tests and tools

Why: only a GitHub App may create check runs. GitHub's rules for the JWT: RS256, `iat`
60 s in the past (clock drift), `exp` at most 10 minutes ahead, `iss` the app id; the
exchange is `POST /app/installations/{id}/access_tokens` (201, `token` + `expires_at`,
valid one hour). Tokens are cached per installation and renewed 5 minutes before they
expire, or at once when GitHub answers 401 (revoked, or our clock was wrong). The key
and every token stay out of reprs, errors and logs (this module logs nothing).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devjobs.errors import DevjobsError
from devjobs.github.http import GitHubError, GitHubHTTP

JWT_BACKDATE = 60
"""Seconds `iat` is set in the past, as GitHub recommends against clock drift."""
JWT_LIFETIME = 540
"""Seconds from now to `exp`: GitHub refuses more than 600; 60 s kept as margin."""
REFRESH_BEFORE = 300.0
"""An installation token is renewed this many seconds before its `expires_at`."""


class TokenSource(Protocol):
    """Gives the token to send, and is told when GitHub refused it."""

    def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class StaticToken:
    """A fixed token (a PAT): nothing to renew."""

    def __init__(self, token: str) -> None:
        if not token:
            raise DevjobsError("github", "no token given")
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"

    def token(self) -> str:
        return self._token

    def invalidate(self, token: str) -> None:
        """Nothing to renew: the next request fails the same way and says so."""


@dataclass
class _Cached:
    token: str = field(repr=False)
    expires_at: float


class GitHubApp:
    """One App identity; thread-safe, so a controller's workers can share it."""

    def __init__(
        self,
        app_id: int | str,
        private_key: bytes | str,
        *,
        http: GitHubHTTP | None = None,
        api_url: str = "https://api.github.com",
        clock: Callable[[], float] = time.time,
        refresh_before: float = REFRESH_BEFORE,
    ) -> None:
        text = str(app_id).strip()
        if not text.isdigit() or int(text) <= 0:
            raise DevjobsError("github app", f"app id must be a positive integer, not {text!r}")
        self.app_id = int(text)
        self._key = _load_key(private_key)
        self._http = http if http is not None else GitHubHTTP(api_url=api_url, clock=clock)
        self._clock = clock
        self._refresh_before = refresh_before
        self._tokens: dict[int, _Cached] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_key_file(cls, app_id: int | str, path: str | Path, **kwargs: object) -> GitHubApp:
        """The key from a PEM file (as GitHub lets you download it, or a mounted Secret)."""
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise DevjobsError(
                str(path), f"cannot read the App's private key: {err.strerror}"
            ) from None
        return cls(app_id, data, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id}, api_url={self._http.api_url!r}, key=<redacted>)"

    def jwt(self) -> str:
        """A JWT for the App's own endpoints, as GitHub documents it."""
        now = int(self._clock())
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": str(self.app_id)}
        signing_input = f"{_b64(_compact(header))}.{_b64(_compact(claims))}".encode()
        signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64(signature)}"

    def installation_token(self, installation_id: int) -> str:
        """A token for the installation, from the cache while it has more than
        `refresh_before` seconds left, else freshly exchanged."""
        _check_installation(installation_id)
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and self._clock() < cached.expires_at - self._refresh_before:
                return cached.token
            fresh = self._exchange(installation_id)
            self._tokens[installation_id] = fresh
            return fresh.token

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget the cached token (only if it is still `token`, when given: another
        worker may already have renewed it)."""
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached is not None and (token is None or cached.token == token):
                del self._tokens[installation_id]

    def installation(self, installation_id: int) -> InstallationAuth:
        _check_installation(installation_id)
        return InstallationAuth(self, installation_id)

    def _exchange(self, installation_id: int) -> _Cached:
        path = f"/app/installations/{installation_id}/access_tokens"
        response = self._http.request("POST", path, token=self.jwt(), hint=_exchange_hint)
        body = response.body if isinstance(response.body, dict) else {}
        token = body.get("token")
        expires = body.get("expires_at")
        if response.status != 201 or not isinstance(token, str) or not token:
            raise GitHubError(
                "github app",
                f"POST {path}: answered {response.status} without a token",
                status=response.status,
            )
        try:
            expires_at = datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise GitHubError(
                "github app", f"POST {path}: expires_at {expires!r} is not a timestamp"
            ) from None
        return _Cached(token, expires_at)


@dataclass(frozen=True)
class InstallationAuth:
    """The TokenSource of one installation of an App."""

    app: GitHubApp
    installation_id: int

    def token(self) -> str:
        return self.app.installation_token(self.installation_id)

    def invalidate(self, token: str) -> None:
        self.app.invalidate(self.installation_id, token)


def _load_key(private_key: bytes | str) -> rsa.RSAPrivateKey:
    """The PEM key (PKCS#1 as GitHub issues it, or PKCS#8). Errors never quote it."""
    data = private_key.encode() if isinstance(private_key, str) else bytes(private_key)
    try:
        key = serialization.load_pem_private_key(data.strip() + b"\n", password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise DevjobsError(
            "github app", "the private key is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DevjobsError("github app", "the private key is not an RSA key (RS256 needs one)")
    return key


def _check_installation(installation_id: int) -> None:
    if isinstance(installation_id, bool) or not isinstance(installation_id, int):
        raise DevjobsError("github app", f"installation id {installation_id!r} is not an integer")
    if installation_id <= 0:
        raise DevjobsError("github app", f"installation id {installation_id} is not positive")


def _exchange_hint(status: int) -> str:
    if status == 401:
        return (
            " (the App's JWT was refused: check the app id, that the key is the App's "
            "current one, and this machine's clock)"
        )
    if status == 404:
        return " (no such installation of this App: check githubInstallationId)"
    if status == 403:
        return " (the installation is suspended, or the App may not get this token)"
    return ""


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _compact(value: Mapping[str, object]) -> str:
    return json.dumps(value, separators=(",", ":"))
