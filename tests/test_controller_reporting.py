"""The controller reports as `devjobs run` does: log tails kept when a Job ends, GitHub
commit statuses when a token is configured, and GitHub failures only as Warning Events.

Real parts: the tier-2 node runs the jobs' pods; the controller runs in this process
(`Controller.run` on a thread, as `devjobs controller` does) with the plan given
directly (its sources name a github.com repository, which the test cannot clone, so the
jobs run with an empty workspace); GitHub is `tests/fake_github.py`, which refuses any
request that breaks the documented contract.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devjobs.controller.decide import Settings
from devjobs.controller.main import Config, Controller
from devjobs.controller.report import Reporting, github_from_env
from devjobs.resolver.models import JobConfig, JobPlan, SourceInfo, Trigger
from devjobs.runner.github import GitHubStatuses
from devjobs.runner.kubeapi import connect
from devjobs.runner.logstore import read_log_tail
from devjobs.runner.render import RenderOptions
from tests.fake_github import FakeGitHub, fake_github
from tests.test_controller_cluster import Catalyst, wait

pytestmark = pytest.mark.tier2

SHA = "c0ffee0" + "1" * 33
TOKEN = "ghs-test-token-5d1f"


def plan(image: str) -> JobPlan:
    def job(name: str, script: str) -> JobConfig:
        return JobConfig(name=name, source="app", trigger=Trigger.POST_BUILD,
                         working_dir="/workspaces/shop", image=image,
                         command=["sh", "-c", script])  # fmt: skip

    return JobPlan(
        sources=[SourceInfo(name="app", repository_url="https://github.com/acme/shop")],
        jobs=[
            job("check", "echo hello from check; echo second line"),
            job("lint", "echo lint found 2 problems >&2; exit 3"),
        ],
    )


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with fake_github(TOKEN) as fake:
        yield fake


def run_controller(
    kube_api: Any, namespace: str, the_plan: JobPlan, reporting: Reporting
) -> tuple[Controller, threading.Event, threading.Thread]:
    config = Config(
        namespaces=(namespace,),
        project_namespace=None,
        settings=Settings(render=RenderOptions(workspace="empty")),
    )
    controller = Controller(
        connect(Path(kube_api.kubeconfig)), config,
        resolver=lambda project, env, cache: the_plan, reporting=reporting,
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    thread.start()
    return controller, stop, thread


def test_finished_jobs_keep_their_log_tails_and_post_commit_statuses(
    kube_api: Any,
    kube_client: Any,
    catalyst_crds: list[str],
    project_crds: list[str],
    kube_node: Any,
    namespace: str,
    github: FakeGitHub,
) -> None:
    image = kube_node.test_image
    reporting = Reporting(github=GitHubStatuses(TOKEN, api_url=github.url, max_wait=1))
    controller, stop, thread = run_controller(kube_api, namespace, plan(image), reporting)
    try:
        catalyst = Catalyst(kube_client, namespace, image)
        catalyst.create_project("https://github.com/acme/shop")
        catalyst.create_environment(SHA)
        build = catalyst.build(SHA)
        wait("the build", lambda: catalyst.build_done(build), 90)

        conds = wait(
            "both jobs to end",
            lambda: (
                (c := catalyst.conditions())
                and c.get("Job.app.check", {}).get("status") == "True"
                and c.get("Job.app.lint", {}).get("status") == "False"
                # Each tail joins its condition once the log is kept, a reconcile after
                # the job ended: wait for both, not just the one that came first.
                and "lint found" in c["Job.app.lint"]["message"]
                and "second line" in c["Job.app.check"]["message"]
                and c
            ),
            90,
        )
        # The condition carries the tail of the job's own output, as `devjobs run` writes it.
        assert "code 3" in conds["Job.app.lint"]["message"]
        assert conds["Job.app.lint"]["message"].endswith("lint found 2 problems")
        assert "hello from check\nsecond line" in conds["Job.app.check"]["message"]

        # Logs outlive the pods (the Jobs stay: deleting one would run it again).
        jobs = catalyst.devjobs_jobs()
        catalyst.core.delete_collection_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/managed-by=devjobs"
        )
        managed = "app.kubernetes.io/managed-by=devjobs"
        pods = catalyst.core.list_namespaced_pod
        wait("the pods to go", lambda: not pods(namespace, label_selector=managed).items, 60)
        assert read_log_tail(kube_client, namespace, "pr-1", "app/check") == {
            "check": "hello from check\nsecond line\n"
        }
        assert read_log_tail(kube_client, namespace, "pr-1", "app/lint") == {
            "lint": "lint found 2 problems\n"
        }
        kept: Any = catalyst.core.list_namespaced_config_map(
            namespace, label_selector="devjobs.dev/component=log-tail,devjobs.dev/job=check"
        )
        (cm,) = kept.items
        assert cm.metadata.owner_references[0].name == "pr-1"
        assert cm.metadata.annotations["devjobs.dev/job-name"] in jobs

        # GitHub: the final state of each job on the commit, nothing the contract forbids.
        final = {s["context"]: s for s in github.statuses}
        assert github.violations == []
        assert {c: (s["state"], s["sha"], s["repo"]) for c, s in final.items()} == {
            "devjobs/app/check": ("success", SHA, "acme/shop"),
            "devjobs/app/lint": ("failure", SHA, "acme/shop"),
        }
        # One status per state of each job: pending, then its end; the reconciles in
        # between (pod created, running, done) post nothing.
        for context, end in (("devjobs/app/check", "success"), ("devjobs/app/lint", "failure")):
            states = [s["state"] for s in github.statuses if s["context"] == context]
            assert states in (["pending", end], [end]), states

        # What was posted is kept on each Job, so a restarted controller (which remembers
        # nothing) does not post it again.
        posted = {
            name: job.metadata.annotations.get("devjobs.dev/github-state")
            for name, job in catalyst.devjobs_jobs().items()
        }
        assert sorted(posted.values()) == ["failure", "success"], posted
    finally:
        stop.set()
        thread.join(10)
    assert controller.stats.errors == 0
    before = len(github.statuses)
    restarted = Reporting(github=GitHubStatuses(TOKEN, api_url=github.url, max_wait=1))
    second, stop, thread = run_controller(kube_api, namespace, plan(image), restarted)
    try:
        wait("the restarted controller to reconcile", lambda: second.stats.reconciles > 0, 30)
        time.sleep(2)  # room for any status it would post
    finally:
        stop.set()
        thread.join(10)
    assert len(github.statuses) == before, github.statuses[before:]
    assert second.stats.errors == 0


def test_a_github_failure_is_a_warning_event_never_a_job_failure(
    kube_api: Any,
    kube_client: Any,
    catalyst_crds: list[str],
    project_crds: list[str],
    kube_node: Any,
    namespace: str,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = kube_node.test_image
    ok = plan(image)
    ok = JobPlan(sources=ok.sources, jobs=ok.jobs[:1])  # only `check`, which succeeds
    monkeypatch.setenv("DEVJOBS_GITHUB_TOKEN", "not-the-token")  # GitHub answers 401
    statuses = github_from_env(api_url=github.url)
    assert statuses is not None
    controller, stop, thread = run_controller(kube_api, namespace, ok, Reporting(github=statuses))
    try:
        catalyst = Catalyst(kube_client, namespace, image)
        catalyst.create_project("https://github.com/acme/shop")
        catalyst.create_environment(SHA)
        build = catalyst.build(SHA)
        wait("the build", lambda: catalyst.build_done(build), 90)
        conds = wait(
            "check to succeed",
            lambda: (
                (c := catalyst.conditions())
                and c.get("Job.app.check", {}).get("status") == "True"
                and c
            ),
            90,
        )
        assert conds["JobsSucceeded"]["status"] == "True"
        (event, *_) = wait("a Warning event", lambda: catalyst.events("GitHubStatusFailed"), 30)
        assert event.type == "Warning"
        assert "401" in event.message and "not-the-token" not in event.message
        assert github.statuses == []
    finally:
        stop.set()
        thread.join(10)
