"""The Jobs view in a real browser (Debian's chromium through Playwright) against the
tier-2 cluster: real pods run the jobs, the controller runs on a thread (plan given
directly, as in `test_controller_reporting`), the UI server on another.

A failing test leaves a screenshot and the page's HTML in `ui-test-report/` (named in
the test's report).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devjobs.kube.client import Kube, connect
from devjobs.resolver.models import JobConfig, Trigger
from tests.catalyst import Catalyst, job_config, job_plan, wait
from tests.ui_browser import (
    chromium,
    controller,
    environments_rule,
    page_capturing_failures,
    service_account_token,
    ui_server,
)

pytestmark = pytest.mark.tier2

SHA = "feed000" + "2" * 33
REPOSITORY = "https://github.com/acme/shop"
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def job(name: str, trigger: Trigger, script: str, image: str) -> JobConfig:
    return job_config(name, trigger, "app", script, image, "/workspaces/shop")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    with page_capturing_failures(browser, request) as p:
        yield p


@pytest.fixture
def kube(kube_api: Any) -> Kube:
    return connect(Path(kube_api.kubeconfig))


@pytest.fixture
def catalyst(
    kube_client: Any, catalyst_crds: list[str], project_crds: list[str], kube_node: Any,
    namespace: str,
) -> Catalyst:  # fmt: skip
    return Catalyst(kube_client, namespace, kube_node.test_image)


def job_url(base: str, namespace: str, key: str) -> str:
    source, name = key.split("/")
    return f"{base}/environments/{namespace}/pr-1/jobs/{source}/{name}"


def test_a_running_jobs_log_appears_live_and_stays_with_its_exit_code_after_the_pod_is_gone(
    kube_api: Any, kube: Kube, namespace: str, catalyst: Catalyst, page: Any
) -> None:
    script = "echo first line; sleep 4; echo second line; sleep 1"
    plan = job_plan({"app": REPOSITORY}, job("check", Trigger.POST_BUILD, script, catalyst.image))
    with (
        controller(kube_api, namespace, plan),
        ui_server(kube, "local", (namespace,), plan) as ui,
    ):
        catalyst.create(REPOSITORY, SHA)
        page.goto(ui.url)  # the start token becomes a cookie
        page.goto(job_url(ui.base_url, namespace, "app/check"))
        catalyst.built(SHA)
        log = page.locator("#log")
        log.get_by_text("first line").wait_for(timeout=60_000)
        # Live: the first line is on the page while the job still runs.
        assert "second line" not in log.inner_text()
        assert page.locator("#state").inner_text() == "Running"
        log.get_by_text("second line").wait_for(timeout=30_000)
        page.locator("#state", has_text="Succeeded").wait_for(timeout=60_000)
        assert page.locator("#exit-code").inner_text() == "0"

        # The pod goes; the page (reloaded) shows the record devjobs kept.
        managed = "app.kubernetes.io/managed-by=devjobs"
        catalyst.core.delete_collection_namespaced_pod(namespace, label_selector=managed)
        pods = catalyst.core.list_namespaced_pod
        wait("the pods to go", lambda: not pods(namespace, label_selector=managed).items, 60)
        wait(
            "the log tail to be kept",
            lambda: (
                catalyst.core.list_namespaced_config_map(
                    namespace, label_selector="devjobs.dev/component=log-tail"
                ).items
            ),
            60,
        )
        page.reload()
        text = page.locator("#log").inner_text()
        assert "first line" in text and "second line" in text, text
        assert page.locator("#exit-code").inner_text() == "0"
        assert "kept by devjobs" in page.locator("#log-source").inner_text()


def test_a_failed_job_shows_the_failing_container_and_the_reason(
    kube_api: Any, kube: Kube, namespace: str, catalyst: Catalyst, page: Any
) -> None:
    script = "echo lint found 2 problems >&2; exit 3"
    plan = job_plan({"app": REPOSITORY}, job("lint", Trigger.POST_BUILD, script, catalyst.image))
    with (
        controller(kube_api, namespace, plan),
        ui_server(kube, "local", (namespace,), plan) as ui,
    ):
        catalyst.create(REPOSITORY, SHA)
        catalyst.built(SHA)
        page.goto(ui.url)
        page.goto(job_url(ui.base_url, namespace, "app/lint"))
        page.locator("#state", has_text="Failed").wait_for(timeout=90_000)
        row = page.locator('#containers tr[data-container="lint"]')
        row.get_by_text("exited with code 3").wait_for(timeout=30_000)
        assert "Failed" in row.inner_text()
        assert page.locator("#exit-code").inner_text() == "3"
        page.locator("#log").get_by_text("lint found 2 problems").wait_for(timeout=30_000)
        # The Jobs tab says it too, with the message.
        page.goto(f"{ui.base_url}/environments/{namespace}/pr-1")
        jobs_row = page.locator('#jobs tr[data-key="app/lint"]')
        assert "Failed" in jobs_row.inner_text()
        assert "code 3" in jobs_row.inner_text()


def test_run_on_a_manual_job_creates_it_and_the_page_turns_succeeded_without_a_reload(
    kube_api: Any, kube: Kube, namespace: str, catalyst: Catalyst, page: Any
) -> None:
    plan = job_plan(
        {"app": REPOSITORY}, job("lint", Trigger.MANUAL, "echo linting; sleep 1", catalyst.image)
    )
    with (
        controller(kube_api, namespace, plan),
        ui_server(kube, "local", (namespace,), plan) as ui,
    ):
        catalyst.create(REPOSITORY, SHA)
        catalyst.built(SHA)
        page.goto(ui.url)
        page.goto(f"{ui.base_url}/environments/{namespace}/pr-1")
        row = page.locator('#jobs tr[data-key="app/lint"]')
        row.get_by_text("Waiting").wait_for(timeout=30_000)
        page.evaluate("window.__sameDocument = true")
        row.get_by_role("button", name="Run").click()
        wait("the Manual Job", lambda: catalyst.devjobs_jobs(), 30)
        page.locator('#jobs tr[data-key="app/lint"] .state', has_text="Succeeded").wait_for(
            timeout=90_000
        )
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
        assert page.locator('#jobs tr[data-key="app/lint"] button.run').inner_text() == "Rerun"


def test_a_read_only_viewer_sees_no_run_button_and_their_post_gets_403(
    kube_api: Any, kube: Kube, namespace: str, catalyst: Catalyst, page: Any
) -> None:
    plan = job_plan({"app": REPOSITORY}, job("lint", Trigger.MANUAL, "true", catalyst.image))
    reader = service_account_token(
        kube, namespace, "reader", {namespace: [environments_rule("get", "list", "watch")]}
    )
    runner = service_account_token(
        kube, namespace, "runner", {namespace: [environments_rule("get", "patch")]}
    )
    catalyst.create(REPOSITORY, SHA)
    with ui_server(kube, "cluster", (), plan) as ui:
        env_page = f"{ui.base_url}/environments/{namespace}/pr-1"
        sign_in(page, ui.base_url, runner)
        page.goto(env_page)
        page.locator('#jobs tr[data-key="app/lint"] button.run').wait_for(timeout=30_000)

        page.context.clear_cookies()
        sign_in(page, ui.base_url, reader)
        page.goto(env_page)
        page.locator('#jobs tr[data-key="app/lint"]').wait_for(timeout=30_000)
        assert page.locator("button.run").count() == 0

        headers = {"Authorization": f"Bearer {reader}"}
        session = httpx.get(f"{ui.base_url}/api/v1/session", headers=headers).json()
        run = f"{ui.base_url}/api/v1/environments/{namespace}/pr-1/jobs/app/lint/run"
        forged = httpx.post(run, headers={**headers, "X-CSRF-Token": session["csrfToken"]})
        assert forged.status_code == 403, forged.text
        env = kube.get(
            f"/apis/catalyst.catalyst.dev/v1alpha1/namespaces/{namespace}/environments/pr-1"
        )
        assert env is not None
        assert "devjobs.dev/run" not in (env["metadata"].get("annotations") or {})

        # The runner's POST goes through, written with the runner's own identity.
        headers = {"Authorization": f"Bearer {runner}"}
        session = httpx.get(f"{ui.base_url}/api/v1/session", headers=headers).json()
        ok = httpx.post(run, headers={**headers, "X-CSRF-Token": session["csrfToken"]})
        assert ok.status_code == 202, ok.text
        env = kube.get(
            f"/apis/catalyst.catalyst.dev/v1alpha1/namespaces/{namespace}/environments/pr-1"
        )
        assert env is not None
        annotations = env["metadata"]["annotations"]
        assert annotations["devjobs.dev/run"] == "app/lint"
        managers = {m.get("manager") for m in env["metadata"].get("managedFields") or []}
        assert "devjobs-ui" in managers


def test_a_viewer_without_access_to_a_namespace_does_not_see_its_environments(
    kube_api: Any, kube: Kube, namespace: str, catalyst: Catalyst, page: Any
) -> None:
    other = f"{namespace[:50]}-other"
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": other}})
    try:
        catalyst.create(REPOSITORY, SHA)
        hidden = Catalyst(catalyst.custom.api_client, other, catalyst.image)
        hidden.create_project(REPOSITORY)
        hidden.create_environment(SHA)
        token = service_account_token(
            kube, namespace, "viewer", {namespace: [environments_rule("get", "list")]}
        )
        with ui_server(kube, "cluster", ()) as ui:
            sign_in(page, ui.base_url, token)
            page.goto(f"{ui.base_url}/")
            table = page.locator("#environments")
            table.get_by_text(f"{namespace}/pr-1").wait_for(timeout=30_000)
            assert other not in table.inner_text()
            hidden_page = page.goto(f"{ui.base_url}/environments/{other}/pr-1")
            assert hidden_page is not None and hidden_page.status == 403
            api = httpx.get(
                f"{ui.base_url}/api/v1/environments", headers={"Authorization": f"Bearer {token}"}
            ).json()
            assert [(e["namespace"], e["name"]) for e in api["environments"]] == [
                (namespace, "pr-1")
            ]
    finally:
        kube.delete(f"/api/v1/namespaces/{other}")


def test_a_hostile_log_line_and_job_name_render_as_text(
    kube: Kube, namespace: str, catalyst: Catalyst, page: Any
) -> None:
    """No controller: a Job someone else labelled as devjobs', with a job key and a log
    line that are markup."""
    catalyst.create(REPOSITORY, SHA)
    hostile_key = f"app/{HOSTILE}"
    labels = {"app.kubernetes.io/managed-by": "devjobs", "devjobs.dev/environment": "pr-1",
              "devjobs.dev/source": "app", "devjobs.dev/job": "evil"}  # fmt: skip
    kube.request(
        "POST",
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        body={
            "metadata": {"name": "evil", "labels": labels,
                         "annotations": {"devjobs.dev/job-key": hostile_key,
                                         "devjobs.dev/commit": SHA}},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "evil", "image": catalyst.image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sh", "-c", f"echo '{HOSTILE}'; sleep 2"]}]}}},
        },
    )  # fmt: skip
    with ui_server(kube, "local", (namespace,)) as ui:
        page.goto(ui.url)
        page.goto(f"{ui.base_url}/environments/{namespace}/pr-1")
        page.locator("#jobs").get_by_text(HOSTILE[4:40]).first.wait_for(timeout=30_000)
        link = page.locator("#jobs a").filter(has_text="script").first
        link.click()
        page.locator("#log").get_by_text("window.__pwned=1").wait_for(timeout=60_000)
        for where in ("#log", "h1"):
            assert HOSTILE in page.locator(where).inner_text()
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img, main script").count() == 0


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/sign-in")
    page.fill('input[name="token"]', token)
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile(re.escape(base) + "/$"))
