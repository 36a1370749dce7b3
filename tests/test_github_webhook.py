"""Webhook deliveries over loopback HTTP: devjobs' handler on a real server, deliveries
signed and sent by tests/fake_github.py's `deliver` as GitHub sends them (the fake is the
only stand-in; no mocks)."""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

import pytest

from devjobs.errors import DevjobsError
from devjobs.github.webhook import (
    MAX_BODY,
    MemoryReplayGuard,
    RerunRequest,
    WebhookReceiver,
    parse_rerun,
    verify_signature,
    webhook_handler,
)
from tests.fake_github import check_run_rerequested, check_suite_rerequested, deliver, sign

SECRET = b"whsec-0123456789"
APP_ID = 4242
INSTALLATION = 77
REPO = "org/app"
SHA = "0123456789abcdef0123456789abcdef01234567"
PATH = "/github/webhook"


@dataclass
class Endpoint:
    url: str
    port: int
    guard: MemoryReplayGuard
    reruns: list[RerunRequest] = field(default_factory=list)
    fail: bool = False


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    guard = MemoryReplayGuard()
    receiver = WebhookReceiver(SECRET, guard, app_id=APP_ID)
    state = Endpoint("", 0, guard)

    def on_rerun(request: RerunRequest) -> None:
        if state.fail:
            raise RuntimeError("the cluster is unreachable")
        state.reruns.append(request)

    server = ThreadingHTTPServer(("127.0.0.1", 0), webhook_handler(receiver, on_rerun))
    state.port = server.server_address[1]
    state.url = f"http://127.0.0.1:{state.port}{PATH}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run_payload(name: str = "devjobs/web/test") -> dict[str, object]:
    return check_run_rerequested(
        REPO, SHA, name, app_id=APP_ID, installation_id=INSTALLATION, run_id=9
    )


def test_signed_check_run_rerequest_asks_to_rerun_that_job(endpoint: Endpoint) -> None:
    status, body = deliver(endpoint.url, "check_run", run_payload(), secret=SECRET, delivery="d-1")
    assert status == 202, body
    assert endpoint.reruns == [
        RerunRequest("d-1", "check_run", REPO, SHA, INSTALLATION, "web", "test", 9)
    ]
    assert not endpoint.reruns[0].whole_suite


def test_signed_check_suite_rerequest_asks_to_rerun_the_suite(endpoint: Endpoint) -> None:
    payload = check_suite_rerequested(REPO, SHA, app_id=APP_ID, installation_id=INSTALLATION)
    status, _ = deliver(endpoint.url, "check_suite", payload, secret=SECRET)
    assert status == 202
    [request] = endpoint.reruns
    assert request.whole_suite and (request.repo, request.head_sha) == (REPO, SHA)


def test_ping_and_other_actions_are_accepted_and_do_nothing(endpoint: Endpoint) -> None:
    assert deliver(endpoint.url, "ping", {"zen": "Keep it simple."}, secret=SECRET)[0] == 200
    created = {**run_payload(), "action": "created"}
    assert deliver(endpoint.url, "check_run", created, secret=SECRET)[0] == 200
    assert endpoint.reruns == [] and len(endpoint.guard) == 0


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"unsigned": True}, 401, "unsigned"),
        ({"signature": "sha256=" + "0" * 64}, 403, "does not match"),
        ({"signature": "sha1=abc"}, 403, "not sha256="),
        ({"signature": sign(b"another secret", json.dumps(run_payload()).encode())}, 403, "match"),
    ],
)
def test_unsigned_or_badly_signed_deliveries_are_refused_and_leave_no_trace(
    endpoint: Endpoint,
    caplog: pytest.LogCaptureFixture,
    kwargs: dict[str, object],
    status: int,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO, "devjobs.github.webhook")
    got, body = deliver(
        endpoint.url,
        "check_run",
        run_payload(),
        secret=SECRET,
        delivery="d-bad",
        **kwargs,  # type: ignore[arg-type]
    )
    assert got == status and reason in json.loads(body)["reason"]
    assert endpoint.reruns == [] and len(endpoint.guard) == 0
    [line] = caplog.messages
    assert line.startswith(f"webhook delivery d-bad refused: {status}")
    assert "devjobs/web/test" not in line  # nothing of the unsigned body is logged
    # ...and the id was not burnt: the genuine delivery with the same id still goes
    assert (
        deliver(endpoint.url, "check_run", run_payload(), secret=SECRET, delivery="d-bad")[0] == 202
    )


def test_a_tampered_body_fails_the_signature(endpoint: Endpoint) -> None:
    original = json.dumps(run_payload()).encode()
    tampered = original.replace(b"devjobs/web/test", b"devjobs/web/prod")
    status, _ = deliver(
        endpoint.url, "check_run", tampered, secret=SECRET, signature=sign(SECRET, original)
    )
    assert status == 403 and endpoint.reruns == []


def test_replayed_delivery_id_is_refused_and_does_nothing_twice(endpoint: Endpoint) -> None:
    assert (
        deliver(endpoint.url, "check_run", run_payload(), secret=SECRET, delivery="d-7")[0] == 202
    )
    status, body = deliver(endpoint.url, "check_run", run_payload(), secret=SECRET, delivery="d-7")
    assert status == 409 and "replayed" in body
    assert len(endpoint.reruns) == 1


def test_a_rerun_that_cannot_start_answers_500_and_may_be_redelivered(endpoint: Endpoint) -> None:
    endpoint.fail = True
    assert (
        deliver(endpoint.url, "check_run", run_payload(), secret=SECRET, delivery="d-9")[0] == 500
    )
    endpoint.fail = False
    assert (
        deliver(endpoint.url, "check_run", run_payload(), secret=SECRET, delivery="d-9")[0] == 202
    )


def test_oversized_delivery_is_refused_before_its_body_is_read(endpoint: Endpoint) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
    connection.putrequest("POST", PATH)
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(25 * 1024 * 1024))
    connection.endheaders()  # and never send the 25 MB
    response = connection.getresponse()
    assert response.status == 413 and b"oversized" in response.read()
    connection.close()
    big = b'{"action": "rerequested", "pad": "' + b"x" * MAX_BODY + b'"}'
    receiver = WebhookReceiver(SECRET, MemoryReplayGuard())
    headers = {"X-Hub-Signature-256": sign(SECRET, big), "X-GitHub-Event": "check_run"}
    assert receiver.receive(headers, big).status == 413


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        ("check_run", b"{not json", "not JSON"),
        ("check_run", b"[1, 2]", "not a JSON object"),
        ("check_run", {"check_run": {}}, "action is missing"),
        ("check_run", {**run_payload(), "repository": {"full_name": "no slash"}}, "repository"),
        ("check_run", {**run_payload(), "check_run": {"name": "devjobs/web/test"}}, "head_sha"),
        ("check_run", run_payload("build (ubuntu)"), "devjobs/<source>/<job>"),
        ("check_run", {**run_payload(), "installation": {"id": "77"}}, "installation.id"),
        (
            "check_run",
            check_run_rerequested(REPO, SHA, "devjobs/web/test", app_id=1, installation_id=77),
            "App 1's, not 4242's",
        ),
        (
            "check_suite",
            {**check_suite_rerequested(REPO, "main", app_id=APP_ID, installation_id=77)},
            "not a full commit SHA",
        ),
    ],
)
def test_malformed_deliveries_are_refused_with_a_precise_reason(
    endpoint: Endpoint, event: str, payload: dict[str, object] | bytes, reason: str
) -> None:
    status, body = deliver(endpoint.url, event, payload, secret=SECRET)
    assert status == 400, body
    assert reason in json.loads(body)["reason"]
    assert endpoint.reruns == [] and len(endpoint.guard) == 0


def test_missing_delivery_header_wrong_content_type_path_and_method(endpoint: Endpoint) -> None:
    payload = run_payload()
    status, body = deliver(
        endpoint.url, "check_run", payload, secret=SECRET, headers={"X-GitHub-Delivery": ""}
    )
    assert status == 400 and "X-GitHub-Delivery" in body
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert deliver(endpoint.url, "check_run", payload, secret=SECRET, headers=form)[0] == 415
    other = endpoint.url.replace(PATH, "/elsewhere")
    assert deliver(other, "check_run", payload, secret=SECRET)[0] == 404
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
    connection.request("GET", PATH)
    assert connection.getresponse().status == 405
    connection.close()
    assert endpoint.reruns == []


def test_signature_check_is_exact() -> None:
    body = b'{"a": 1}'
    verify_signature(SECRET, body, sign(SECRET, body))
    verify_signature(SECRET, body, sign(SECRET, body).upper().replace("SHA256=", "sha256="))


def test_replay_guard_forgets_after_its_ttl_and_beyond_its_size() -> None:
    now = [0.0]
    guard = MemoryReplayGuard(ttl=10, max_entries=2, clock=lambda: now[0])
    assert guard.claim("a") and not guard.claim("a")
    now[0] = 11
    assert guard.claim("a")  # remembered for ttl only
    assert guard.claim("b") and guard.claim("c")
    assert len(guard) == 2 and guard.claim("a")  # the oldest was forgotten


def test_receiver_needs_a_secret_and_hides_it() -> None:
    with pytest.raises(DevjobsError, match="no webhook secret"):
        WebhookReceiver(b"", MemoryReplayGuard())
    assert "whsec" not in repr(WebhookReceiver(SECRET, MemoryReplayGuard()))


def test_parse_rerun_ignores_other_events() -> None:
    assert parse_rerun("push", "d", b'{"ref": "refs/heads/main"}') is None
