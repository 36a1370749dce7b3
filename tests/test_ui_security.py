"""The Jobs view's request checks (pure): Host, start token, CSRF, Origin, bearer."""

from __future__ import annotations

import pytest

from devjobs.cli.addresses import listen_address, loopback_address
from devjobs.errors import DevjobsError
from devjobs.ui import security


def test_only_the_servers_own_address_is_an_accepted_host() -> None:
    own = security.own_hosts("127.0.0.1", 8765)
    assert security.host_allowed("127.0.0.1:8765", own)
    for host in (None, "", "127.0.0.1", "127.0.0.1:8766", "localhost:8765", "evil.example:8765"):
        assert not security.host_allowed(host, own), host
    assert security.own_hosts("::1", 80) == ("[::1]:80",)


def test_the_start_token_matches_only_itself() -> None:
    token = security.StartToken()
    assert len(token.value) >= 40
    assert token.matches(token.value)
    assert not token.matches(None) and not token.matches("") and not token.matches(token.value[:-1])
    assert security.StartToken().value != token.value


def test_a_csrf_token_is_bound_to_its_session_and_the_servers_secret() -> None:
    secret, other_secret = b"s" * 32, b"t" * 32
    token = security.csrf_token(secret, "session-a")
    assert security.csrf_valid(secret, "session-a", token)
    assert not security.csrf_valid(secret, "session-b", token)
    assert not security.csrf_valid(other_secret, "session-a", token)
    assert not security.csrf_valid(secret, "session-a", None)
    assert "session-a" not in token


def test_cross_origin_requests_pass_only_from_the_own_or_a_named_origin() -> None:
    own = ["http://127.0.0.1:8765"]
    assert security.origin_allowed(None, own, ())
    assert security.origin_allowed("http://127.0.0.1:8765", own, ())
    assert not security.origin_allowed("https://evil.example", own, ())
    assert not security.origin_allowed("null", own, ())
    assert security.origin_allowed("https://catalyst.example", own, ("https://catalyst.example/",))


def test_the_content_security_policy_allows_no_inline_script_and_no_framing() -> None:
    csp = security.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp


def test_a_bearer_header_gives_its_token() -> None:
    assert security.bearer("Bearer abc") == "abc"
    assert security.bearer("bearer  abc ") == "abc"
    assert security.bearer("Basic abc") is None and security.bearer("Bearer ") is None
    assert security.bearer(None) is None


def test_devjobs_ui_listens_on_loopback_addresses_only() -> None:
    assert loopback_address("127.0.0.1:8765", "--address") == ("127.0.0.1", 8765)
    assert loopback_address("[::1]:9000", "--address") == ("::1", 9000)
    assert loopback_address("localhost:1", "--address") == ("127.0.0.1", 1)
    for bad in ("0.0.0.0:8765", ":8765", "192.168.1.2:80", "example.com:80", "127.0.0.1"):
        with pytest.raises(DevjobsError, match="^--address: "):
            loopback_address(bad, "--address")


def test_the_controllers_servers_listen_on_host_port_or_every_interface() -> None:
    assert listen_address("0.0.0.0:8080", "--ui-address") == ("0.0.0.0", 8080)
    assert listen_address(":9443", "--gate-webhook-address") == ("0.0.0.0", 9443)
    assert listen_address("[::]:80", "--webhook-address") == ("::", 80)
    for bad in ("8080", "host:", "host:http", ":65536", ":-1"):
        with pytest.raises(DevjobsError, match="^--webhook-address: .* is not HOST:PORT or :PORT$"):
            listen_address(bad, "--webhook-address")
