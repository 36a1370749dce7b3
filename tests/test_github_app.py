"""The GitHub App identity against tests/fake_github.py, over loopback HTTP.

The fake is the only stand-in (no mocks): it verifies the App JWT against the App's
public key with the documented iat/exp/iss rules, issues installation tokens that expire
on the test's clock, and records every request so the tests can count exchanges.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devjobs.errors import DevjobsError
from devjobs.github.app import GitHubApp, StaticToken
from devjobs.github.http import GitHubError, GitHubHTTP, RetryLater
from tests.fake_github import FakeClock, FakeGitHub, fake_github

APP_ID = 4242
INSTALLATION = 77


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gh(clock: FakeClock) -> Iterator[FakeGitHub]:
    with fake_github(app_id=APP_ID, clock=clock, installations={INSTALLATION: None}) as fake:
        yield fake
        assert fake.violations == [], "the client broke the documented contract"


def make_app(gh: FakeGitHub, clock: FakeClock, **kwargs: object) -> GitHubApp:
    http = GitHubHTTP(api_url=gh.url, clock=clock, sleep=clock.sleep)
    return GitHubApp(APP_ID, gh.app_private_key_pem, http=http, clock=clock, **kwargs)  # type: ignore[arg-type]


def claims(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_jwt_follows_githubs_rules_and_the_fake_accepts_it(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    app = make_app(gh, clock)
    token = app.jwt()
    assert claims(token) == {
        "iat": int(clock.now) - 60,
        "exp": int(clock.now) + 540,
        "iss": str(APP_ID),
    }
    assert app.installation_token(INSTALLATION).startswith("ghs_")
    [request] = gh.requests
    assert (request["method"], request["path"]) == (
        "POST",
        f"/app/installations/{INSTALLATION}/access_tokens",
    )


def test_installation_token_is_cached_until_five_minutes_before_it_expires(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    app = make_app(gh, clock)
    first = app.installation_token(INSTALLATION)
    clock.advance(3600 - 301)
    assert app.installation_token(INSTALLATION) == first
    clock.advance(2)  # now within 5 minutes of expires_at
    second = app.installation_token(INSTALLATION)
    assert second != first
    assert gh.issued == [INSTALLATION, INSTALLATION]


def test_expired_token_is_renewed_and_a_revoked_one_after_invalidate(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    app = make_app(gh, clock)
    first = app.installation_token(INSTALLATION)
    clock.advance(7200)
    second = app.installation_token(INSTALLATION)
    assert second != first and second in gh.live_tokens()
    gh.revoke(second)
    app.invalidate(INSTALLATION, "some-other-token")  # a stale invalidate keeps the cache
    assert app.installation_token(INSTALLATION) == second
    app.installation(INSTALLATION).invalidate(second)
    assert app.installation_token(INSTALLATION) in gh.live_tokens()


def test_jwt_from_a_clock_ten_minutes_ahead_is_refused_with_a_hint(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    skewed = FakeClock(clock.now + 900)
    http = GitHubHTTP(api_url=gh.url, clock=skewed, sleep=skewed.sleep)
    app = GitHubApp(APP_ID, gh.app_private_key_pem, http=http, clock=skewed)
    with pytest.raises(GitHubError, match=r"401 'Issued at' .*this machine's clock") as err:
        app.installation_token(INSTALLATION)
    assert err.value.status == 401
    gh.violations.clear()  # the fake rightly recorded the refused JWT


def test_jwt_signed_by_another_key_is_refused(gh: FakeGitHub, clock: FakeClock) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    http = GitHubHTTP(api_url=gh.url, clock=clock, sleep=clock.sleep)
    app = GitHubApp(APP_ID, pem, http=http, clock=clock)
    with pytest.raises(GitHubError, match="signature verification failed"):
        app.installation_token(INSTALLATION)
    assert gh.tokens == {}
    gh.violations.clear()


def test_unknown_installation_is_a_clear_404(gh: FakeGitHub, clock: FakeClock) -> None:
    with pytest.raises(GitHubError, match=r"404 .*githubInstallationId"):
        make_app(gh, clock).installation_token(999)
    gh.violations.clear()


def test_rate_limited_exchange_longer_than_the_cap_raises_retry_later(
    gh: FakeGitHub, clock: FakeClock
) -> None:
    gh.rate_limit_next(retry_after=3600, match="access_tokens")
    with pytest.raises(RetryLater) as err:
        make_app(gh, clock).installation_token(INSTALLATION)
    assert err.value.wait == 3600.0
    assert clock.sleeps == []


def test_key_and_tokens_never_appear_in_reprs_errors_or_logs(
    gh: FakeGitHub, clock: FakeClock, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(gh.app_private_key_pem)
    http = GitHubHTTP(api_url=gh.url, clock=clock, sleep=clock.sleep)
    app = GitHubApp.from_key_file(APP_ID, key_file, http=http, clock=clock)
    token = app.installation_token(INSTALLATION)
    key_body = gh.app_private_key_pem.decode().splitlines()[1]
    shown = repr(app) + repr(app.installation(INSTALLATION)) + repr(StaticToken("pat_x"))
    shown += repr(app._tokens)  # the cache, as a debugger would print it
    for secret in (token, key_body, "pat_x"):
        assert secret not in shown
        assert secret not in caplog.text
    with pytest.raises(DevjobsError) as err:
        GitHubApp(APP_ID, gh.app_private_key_pem[:200])
    assert key_body[:20] not in str(err.value) and err.value.__cause__ is None


def test_key_must_be_an_rsa_pem_and_app_id_a_positive_integer(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(DevjobsError, match="not an RSA key"):
        GitHubApp(APP_ID, ec_key)
    with pytest.raises(DevjobsError, match="not an unencrypted PEM private key"):
        GitHubApp(APP_ID, b"hello")
    with pytest.raises(DevjobsError, match="positive integer"):
        GitHubApp("abc", b"hello")
    with pytest.raises(DevjobsError, match="cannot read the App's private key"):
        GitHubApp.from_key_file(APP_ID, tmp_path / "missing.pem")


def test_private_key_from_a_secrets_str_value_works(gh: FakeGitHub, clock: FakeClock) -> None:
    http = GitHubHTTP(api_url=gh.url, clock=clock, sleep=clock.sleep)
    app = GitHubApp(str(APP_ID), gh.app_private_key_pem.decode(), http=http, clock=clock)
    assert app.installation_token(INSTALLATION)
