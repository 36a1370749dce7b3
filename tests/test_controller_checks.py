"""The controller with a GitHub App: each job run is a check run, Re-run from GitHub works.

Real parts: the tier-2 node runs the jobs' pods, the API server keeps every record (the
check-run annotations, the webhook's replay ConfigMap), the controller runs in this
process as `devjobs controller` runs it, and its webhook endpoint is served on loopback.
The one stand-in is GitHub: `tests/fake_github.py`, which verifies the App's JWT against
its public key, issues expiring installation tokens, enforces the check-run field limits
and signs webhook deliveries as GitHub does. The plan is given directly and the
repository's file list is given to the controller (the source names a github.com
repository, which the test cannot clone, so the resolver's git cache has no tree of it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devjobs.controller.decide import Settings
from devjobs.controller.githubapp import AppChecks
from devjobs.controller.main import Config, Controller
from devjobs.controller.webhook import ClusterReplayGuard, serve
from devjobs.github.app import GitHubApp
from devjobs.github.webhook import WebhookReceiver
from devjobs.kube.client import connect
from devjobs.kube.podspec import RenderOptions
from devjobs.resolver.models import JobConfig, JobPlan, Trigger
from tests.catalyst import GROUP, VERSION, Catalyst, job_config, job_plan, project, wait
from tests.fake_github import FakeGitHub, check_run_rerequested, deliver, fake_github, sign

SHA = "c0ffee0" + "2" * 33
REPOSITORY = "https://github.com/acme/shop"
APP_ID = 31337
INSTALLATION = 4242
SECRET = b"webhook-secret-9c1e"
FILES = frozenset({"src/app.py", "scripts/test.sh"})


def job(name: str, trigger: Trigger, script: str, image: str) -> JobConfig:
    return job_config(name, trigger, "app", script, image, "/workspaces/shop")


def plan(image: str, slow: bool = False) -> JobPlan:
    lint = (
        "echo checking; echo 'src/app.py:3:5: error: undefined name x';"
        " echo '/workspaces/shop/src/app.py:7: warning: unused import';"
        " echo 'elsewhere/none.py:1: not a file of the repository'; exit 2"
    )
    return job_plan(
        {"app": REPOSITORY},
        job("check", Trigger.POST_BUILD, f"{'sleep 8; ' if slow else ''}echo all good", image),
        job("lint", Trigger.POST_BUILD, lint, image),
    )


@pytest.fixture
def clock() -> Iterator[list[float]]:
    yield [0.0]  # seconds added to the real time, by both the fake and the App


@pytest.fixture
def github(clock: list[float]) -> Iterator[FakeGitHub]:
    with fake_github(
        app_id=APP_ID, clock=lambda: time.time() + clock[0], installations={INSTALLATION: None}
    ) as fake:
        yield fake


@pytest.fixture
def catalyst(
    kube_client: Any, catalyst_crds: list[str], project_crds: list[str], kube_node: Any,
    namespace: str,
) -> Catalyst:  # fmt: skip
    return Catalyst(kube_client, namespace, kube_node.test_image)


def create(catalyst: Catalyst) -> None:
    """The Project (with its githubInstallationId) and the Environment at SHA, built."""
    body = project({catalyst.source: REPOSITORY}, namespace=catalyst.ns)
    body["spec"]["githubInstallationId"] = str(INSTALLATION)
    catalyst.custom.create_namespaced_custom_object(GROUP, VERSION, catalyst.ns, "projects", body)
    catalyst.create_environment(SHA)
    catalyst.set_phase("Ready")


@contextmanager
def running(
    kube_api: Any, namespace: str, the_plan: JobPlan, github: FakeGitHub, clock: list[float]
) -> Iterator[tuple[Controller, str]]:
    """The controller with the App, and its webhook's URL; stopped on leaving."""
    app = GitHubApp(
        APP_ID, github.app_private_key_pem, api_url=github.url, clock=lambda: time.time() + clock[0]
    )
    checks = AppChecks(app, api_url=github.url, repo_files=lambda url, sha: FILES, max_wait=1)
    config = Config(
        namespaces=(namespace,),
        project_namespace=None,
        settings=Settings(
            render=RenderOptions(workspace="empty"),
            ui_url="https://devjobs.example/{namespace}/{environment}/{source}/{job}",
        ),
    )
    kube = connect(Path(kube_api.kubeconfig))
    controller = Controller(kube, config, resolver=lambda p, e, c: the_plan, checks=checks)
    stop = threading.Event()
    receiver = WebhookReceiver(SECRET, ClusterReplayGuard(kube, namespace), app_id=APP_ID)
    server = serve(controller, "127.0.0.1", 0, receiver, stop)
    thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield controller, f"http://127.0.0.1:{server.server_address[1]}/github/webhook"
    finally:
        stop.set()
        thread.join(10)


def runs_named(github: FakeGitHub, name: str) -> list[dict[str, Any]]:
    return [r for r in github.check_runs.values() if r.get("name") == name]


def final(github: FakeGitHub, name: str) -> dict[str, Any] | None:
    found = runs_named(github, name)
    return found[-1] if found and found[-1]["status"] == "completed" else None


@pytest.mark.tier2
def test_check_runs_with_conclusions_annotations_and_a_rerun_from_github(
    kube_api: Any, namespace: str, catalyst: Catalyst, github: FakeGitHub, clock: list[float]
) -> None:
    with running(kube_api, namespace, plan(catalyst.image), github, clock) as (controller, url):
        create(catalyst)
        catalyst.built(SHA)
        wait("both check runs to complete", lambda: final(github, "devjobs/app/check")
             and final(github, "devjobs/app/lint"), 120)  # fmt: skip
        assert github.violations == []
        check = final(github, "devjobs/app/check")
        lint = final(github, "devjobs/app/lint")
        assert check is not None and lint is not None
        assert check["conclusion"] == "success"
        assert (check["head_sha"], check["repo"]) == (SHA, "acme/shop")
        assert "all good" in check["output"]["text"]
        assert check["details_url"] == f"https://devjobs.example/{namespace}/pr-1/app/check"
        assert lint["conclusion"] == "failure"
        assert "exit code 2" in lint["output"]["title"]
        assert "undefined name x" in lint["output"]["text"]  # the log tail
        assert {(a["path"], a["start_line"], a["annotation_level"])
                for a in lint["output"]["annotations"]} == {
            ("src/app.py", 3, "failure"), ("src/app.py", 7, "warning")}  # fmt: skip
        # One check run per job, and what was posted is kept on each Job.
        assert len(github.check_runs) == 2
        records = sorted(
            j.metadata.annotations.get("devjobs.dev/check-run")
            for j in catalyst.devjobs_jobs().values()
        )
        assert records == sorted(
            [f"{check['id']}:completed:success", f"{lint['id']}:completed:failure"]
        )

        # Re-run from GitHub: a badly signed delivery and a replay change nothing.
        payload = check_run_rerequested(
            "acme/shop", SHA, "devjobs/app/lint", app_id=APP_ID, installation_id=INSTALLATION,
            run_id=lint["id"],
        )  # fmt: skip
        status, _ = deliver(url, "check_run", payload, secret=SECRET, signature=sign(b"x", b"y"))
        assert status == 403
        time.sleep(2)
        assert len(catalyst.devjobs_jobs()) == 2
        status, _ = deliver(url, "check_run", payload, secret=SECRET, delivery="d-1")
        assert status == 202
        status, _ = deliver(url, "check_run", payload, secret=SECRET, delivery="d-1")
        assert status == 409
        wait("the re-run's check run to complete",
             lambda: len(runs_named(github, "devjobs/app/lint")) == 2
             and final(github, "devjobs/app/lint"), 120)  # fmt: skip
        assert len(catalyst.devjobs_jobs()) == 3  # one new Job: the replay started none
        rerun = final(github, "devjobs/app/lint")
        assert rerun is not None and rerun["id"] != lint["id"]
        assert rerun["conclusion"] == "failure"
        assert github.violations == []
    assert controller.stats.errors == 0


@pytest.mark.tier2
def test_a_restart_mid_run_an_expired_token_and_a_rate_limit(
    kube_api: Any, namespace: str, catalyst: Catalyst, github: FakeGitHub, clock: list[float]
) -> None:
    the_plan = plan(catalyst.image, slow=True)
    with running(kube_api, namespace, the_plan, github, clock):
        create(catalyst)
        catalyst.built(SHA)
        wait(
            "check in progress",
            lambda: any(
                r["status"] == "in_progress" for r in runs_named(github, "devjobs/app/check")
            ),
            90,
        )
    # The first controller is gone mid-run; its installation token expires meanwhile,
    # and GitHub's next check-run answer is a secondary rate limit.
    clock[0] += 3700
    issued = len(github.issued)
    github.rate_limit_next(retry_after=3, match="check-runs")
    with running(kube_api, namespace, the_plan, github, clock) as (controller, _):
        wait("check to complete", lambda: final(github, "devjobs/app/check"), 120)
        wait("lint to complete", lambda: final(github, "devjobs/app/lint"), 60)
        assert len(runs_named(github, "devjobs/app/check")) == 1  # updated, not created again
        assert len(github.issued) > issued  # a new token for the expired one
        assert github.violations == []
        assert not any(r for r in github.scripted)  # the rate limit was answered, then retried
        assert catalyst.events("GitHubCheckRunFailed")  # said as a Warning Event
    assert controller.stats.errors == 0
