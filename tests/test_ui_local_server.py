"""`devjobs ui`'s local server against a real API server (tier 1): it answers only to its
own address and only with the start token; the token becomes an HttpOnly, SameSite=Strict
cookie; POSTs need the CSRF token; every answer carries the strict CSP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devjobs.kube.client import connect
from devjobs.ui.security import CONTENT_SECURITY_POLICY
from devjobs.ui.serve import Running
from tests.ui_browser import ui_server


@pytest.fixture
def ui(kube_api: Any, catalyst_crds: list[str], namespace: str) -> Iterator[Running]:
    with ui_server(connect(Path(kube_api.kubeconfig)), "local", (namespace,)) as running:
        yield running


def test_the_local_server_refuses_a_missing_or_wrong_token(ui: Running) -> None:
    assert httpx.get(f"{ui.base_url}/").status_code == 401
    assert httpx.get(f"{ui.base_url}/api/v1/environments").status_code == 401
    assert httpx.get(f"{ui.base_url}/?token=wrong").status_code == 401
    cookies = {"devjobs_session": "wrong"}
    assert httpx.get(f"{ui.base_url}/", cookies=cookies).status_code == 401


def test_the_local_server_refuses_a_host_other_than_its_own_address(ui: Running) -> None:
    for host in ("evil.example", f"evil.example:{ui.port}", f"localhost:{ui.port}", ""):
        answer = httpx.get(ui.url, headers={"Host": host})
        assert answer.status_code in (400, 403), (host, answer.status_code)
        assert "set-cookie" not in answer.headers


def test_the_start_token_becomes_an_httponly_samesite_strict_cookie(ui: Running) -> None:
    answer = httpx.get(ui.url)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert answer.headers["referrer-policy"] == "same-origin"
    with httpx.Client(base_url=ui.base_url, cookies=answer.cookies) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "<script>" not in page.text  # no inline script: only /static/app.js


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(
    ui: Running, namespace: str
) -> None:
    cookies = httpx.get(ui.url).cookies
    run = f"/api/v1/environments/{namespace}/pr-1/jobs/app/lint/run"
    with httpx.Client(base_url=ui.base_url, cookies=cookies) as client:
        csrf = client.get("/api/v1/session").json()["csrfToken"]
        assert client.post(run).status_code == 403
        assert client.post(run, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
        other = client.post(run, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
        assert other.status_code == 403
        # With the token, the request reaches the Environment check (there is none).
        assert client.post(run, headers={"X-CSRF-Token": csrf}).status_code == 404


def test_devjobs_ui_prints_the_url_with_its_token_as_the_last_start_up_line(
    kube_api: Any, catalyst_crds: list[str], namespace: str
) -> None:
    command = [sys.executable, "-m", "devjobs", "ui", "--kubeconfig", str(kube_api.kubeconfig),
               "-n", namespace, "--address", "127.0.0.1:0"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line.startswith("devjobs ui: open http://127.0.0.1:"), line
            url = line.rsplit(" ", 1)[1]
            assert "?token=" in url
            assert httpx.get(url).status_code == 303
        finally:
            process.terminate()
            process.wait(10)
