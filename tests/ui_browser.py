"""Helpers of the Jobs view's browser tests: Debian's chromium through Playwright, the UI
server on a thread, the controller on a thread, viewers' ServiceAccount tokens, and what
a failing test leaves in its report (a screenshot and the page's HTML).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devjobs.kube.client import Kube, connect
from devjobs.resolver.models import JobPlan
from devjobs.ui.app import Mode
from devjobs.ui.serve import Running

CHROMIUM = os.environ.get("DEVJOBS_CHROMIUM", "/usr/bin/chromium")
REPORT_DIR = Path(os.environ.get("DEVJOBS_UI_REPORT_DIR", "ui-test-report"))


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium (the system's: `playwright install` cannot download here)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def page_capturing_failures(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page; when the test failed, a screenshot and the
    page's HTML are saved under REPORT_DIR and named in the test's report (user
    properties and the teardown's stderr)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    failed_before = request.session.testsfailed
    try:
        yield page
    finally:
        if request.session.testsfailed > failed_before:
            REPORT_DIR.mkdir(parents=True, exist_ok=True)
            stem = REPORT_DIR / request.node.name
            try:
                page.screenshot(path=f"{stem}.png", full_page=True)
                Path(f"{stem}.html").write_text(page.content())
                request.node.user_properties += [
                    ("screenshot", f"{stem}.png"), ("html", f"{stem}.html"),
                ]  # fmt: skip
                print(f"ui test failed: screenshot {stem}.png, HTML {stem}.html", file=sys.stderr)
            except Exception as error:  # the page itself may be what broke
                print(f"ui test failed; no screenshot: {error}", file=sys.stderr)
        context.close()


@contextmanager
def controller(kube_api: Any, namespace: str, plan: JobPlan) -> Iterator[Any]:
    """The controller of `namespace` on a thread, resolving every Project to `plan`."""
    from devjobs.controller.decide import Settings
    from devjobs.controller.main import Config, Controller
    from devjobs.kube.podspec import RenderOptions

    config = Config(
        namespaces=(namespace,),
        project_namespace=None,
        settings=Settings(render=RenderOptions(workspace="empty")),
    )
    running = Controller(
        connect(Path(kube_api.kubeconfig)), config, resolver=lambda project, env, cache: plan
    )
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield running
    finally:
        stop.set()
        thread.join(10)


@contextmanager
def ui_server(
    kube: Kube, mode: Mode, namespaces: Sequence[str] = (), plan: JobPlan | None = None
) -> Iterator[Running]:
    """The Jobs view on a free loopback port; every Project resolves to `plan`."""
    resolver = (lambda project, env, cache: plan) if plan is not None else None
    running = Running(kube, mode, "127.0.0.1", 0, namespaces, resolver, None).start()
    try:
        yield running
    finally:
        running.close()


def service_account_token(
    kube: Kube, namespace: str, name: str, rules: Mapping[str, Sequence[Mapping[str, Any]]]
) -> str:
    """A ServiceAccount `name` in `namespace` with a Role of `rules` in each namespace
    given (namespace -> rules), and a token for it (TokenRequest)."""
    kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        body={"metadata": {"name": name}},
    )
    for where, role_rules in rules.items():
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{where}"
        kube.request("POST", f"{rbac}/roles", body={"metadata": {"name": name},
                                                    "rules": list(role_rules)})  # fmt: skip
        kube.request(
            "POST",
            f"{rbac}/rolebindings",
            body={
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        )  # fmt: skip
    answer = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"spec": {"expirationSeconds": 3600}},
    )
    token: str = answer["status"]["token"]
    return token


def environments_rule(*verbs: str) -> dict[str, Any]:
    return {"apiGroups": ["catalyst.catalyst.dev"], "resources": ["environments"],
            "verbs": list(verbs)}  # fmt: skip
