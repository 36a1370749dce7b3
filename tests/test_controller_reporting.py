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

from devjobs.controller.decide import Settings, decide
from devjobs.controller.main import Config, Controller
from devjobs.controller.observe import observe
from devjobs.controller.report import Reporting, github_from_env
from devjobs.resolver.models import JobConfig, JobPlan, RunAs, SourceInfo, Trigger
from devjobs.runner.github import GitHubStatuses
from devjobs.runner.jobstate import JobState, Phase
from devjobs.runner.kubeapi import Kube, connect
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


# --- InitContainer jobs: statuses from the workload's pods, kept on the Deployment -----


def init_plan(image: str) -> JobPlan:
    def job(name: str, trigger: Trigger, script: str, **kwargs: Any) -> JobConfig:
        return JobConfig(name=name, source="app", trigger=trigger,
                         working_dir="/workspaces/shop", image=image,
                         command=["sh", "-c", script], **kwargs)  # fmt: skip

    return JobPlan(
        sources=[SourceInfo(name="app", repository_url="https://github.com/acme/shop")],
        jobs=[
            job("check", Trigger.POST_BUILD, "echo checked"),
            job("migrate", Trigger.PRE_DEPLOY, "echo migrated", run_as=RunAs.INIT_CONTAINER),
            job("seed", Trigger.PRE_DEPLOY, "echo seeding; exit 4", run_as=RunAs.INIT_CONTAINER),
        ],
    )


def test_init_container_jobs_post_pending_then_their_result_once_across_a_restart(
    kube_api: Any,
    kube_client: Any,
    catalyst_crds: list[str],
    project_crds: list[str],
    kube_node: Any,
    namespace: str,
    github: FakeGitHub,
) -> None:
    image = kube_node.test_image
    the_plan = init_plan(image)
    reporting = Reporting(github=GitHubStatuses(TOKEN, api_url=github.url, max_wait=1))
    controller, stop, thread = run_controller(kube_api, namespace, the_plan, reporting)
    catalyst = Catalyst(kube_client, namespace, image)
    try:
        catalyst.create_project("https://github.com/acme/shop")
        catalyst.create_environment(SHA)
        # The workload is Ready before the build: the round that adds the init
        # containers must still say pending (that readiness is the old template's).
        catalyst.deploy_web()
        wait("web Ready", lambda: catalyst.apps.read_namespaced_deployment(
            "web", namespace).status.ready_replicas == 1, 60)  # fmt: skip
        build = catalyst.build(SHA)
        wait("the build", lambda: catalyst.build_done(build), 90)
        conds = wait(
            "the init container jobs' results",
            lambda: (
                (c := catalyst.conditions())
                and c.get("Job.app.migrate", {}).get("status") == "True"
                and c.get("Job.app.seed", {}).get("status") == "False"
                and c.get("Job.app.check", {}).get("status") == "True"
                and c
            ),
            120,
        )
        assert "code 4" in conds["Job.app.seed"]["message"]

        def states(context: str) -> list[str]:
            return [s["state"] for s in github.statuses if s["context"] == context]

        wait("the final statuses", lambda: states("devjobs/app/seed")[-1:] == ["failure"]
             and states("devjobs/app/migrate")[-1:] == ["success"], 30)  # fmt: skip
        time.sleep(3)  # the seed's pod backs off and restarts: room for a repeat
        assert github.violations == []
        # Pending when the patch carrying them was applied, then the init container's result.
        assert states("devjobs/app/migrate") == ["pending", "success"], github.statuses
        assert states("devjobs/app/seed") == ["pending", "failure"], github.statuses
        assert states("devjobs/app/check") in (["pending", "success"], ["success"])
        assert {(s["sha"], s["repo"]) for s in github.statuses} == {(SHA, "acme/shop")}
        (seed,) = [s for s in github.statuses if s["context"] == "devjobs/app/seed"][1:]
        assert "code 4" in seed["description"], seed

        # Kept on the Deployment, per job, by a merge patch of those annotations only.
        web: Any = catalyst.apps.read_namespaced_deployment("web", namespace)
        annotations = web.metadata.annotations
        assert annotations["devjobs.dev/github-state.app.migrate"] == f"success@{SHA}"
        assert annotations["devjobs.dev/github-state.app.seed"] == f"failure@{SHA}"
        (entry,) = [m for m in web.metadata.managed_fields if m.manager == "devjobs-controller"]
        assert entry.operation == "Update"
        assert entry.fields_v1 == {"f:metadata": {"f:annotations": {
            "f:devjobs.dev/github-state.app.migrate": {},
            "f:devjobs.dev/github-state.app.seed": {},
        }}}  # fmt: skip
    finally:
        stop.set()
        thread.join(10)
    assert controller.stats.errors == 0
    before = len(github.statuses)
    restarted = Reporting(github=GitHubStatuses(TOKEN, api_url=github.url, max_wait=1))
    second, stop, thread = run_controller(kube_api, namespace, the_plan, restarted)
    try:
        wait("the restarted controller to reconcile", lambda: second.stats.reconciles > 0, 30)
        time.sleep(3)  # room for any status it would post
    finally:
        stop.set()
        thread.join(10)
    assert len(github.statuses) == before, github.statuses[before:]
    assert second.stats.errors == 0
    assert github.violations == []


class RecordingKube(Kube):
    """No API server: records the requests reporting makes."""

    def __init__(self) -> None:
        super().__init__(api_client=None)
        self.made: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, query: Any = None, body: Any = None,
                content_type: str = "application/json", timeout: Any = 30,
                stream: bool = False) -> Any:  # fmt: skip
        self.made.append((method, path, body))
        return {}


def test_an_init_container_job_is_posted_once_per_state_and_not_pending_after_a_result(
    github: FakeGitHub,
) -> None:
    env = {"apiVersion": "catalyst.catalyst.dev/v1alpha1", "kind": "Environment",
           "metadata": {"name": "pr-1", "namespace": "ns", "uid": "u"},
           "spec": {"projectRef": {"name": "shop"}, "type": "development",
                    "sources": [{"name": "app", "branch": "main", "commitSha": SHA}]}}  # fmt: skip
    web: dict[str, Any] = {"metadata": {"name": "web", "namespace": "ns"}, "spec": {}}
    kube = RecordingKube()
    reporting = Reporting(github=GitHubStatuses(TOKEN, api_url=github.url, max_wait=1))

    def state(phase: Phase) -> JobState:
        return JobState(source="app", job="seed", phase=phase, reason=phase.value,
                        exit_code=None, started=None, finished=None, message="",
                        commit=SHA, job_name=None)  # fmt: skip

    def post(phase: Phase) -> int:
        observed = observe(env, plan=init_plan("busybox:1"), deployment=web)
        return reporting.post_statuses(kube, observed, {"app/seed": state(phase)})

    assert [post(Phase.PENDING), post(Phase.PENDING), post(Phase.RUNNING)] == [1, 0, 0]
    assert [post(Phase.FAILED), post(Phase.FAILED)] == [1, 0]
    # A replacement pod runs the containers again: not news, GitHub keeps the failure.
    assert post(Phase.PENDING) == 0
    assert post(Phase.SUCCEEDED) == 1
    assert [s["state"] for s in github.statuses] == ["pending", "failure", "success"]
    assert github.violations == []
    annotation = "devjobs.dev/github-state.app.seed"
    assert [(m, p, b["metadata"]["annotations"][annotation]) for m, p, b in kube.made] == [
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web", f"{s}@{SHA}")
        for s in ("pending", "failure", "success")
    ]
    # A new process reads what was posted from the Deployment and posts nothing again.
    web["metadata"]["annotations"] = {annotation: f"success@{SHA}"}
    reporting = Reporting(github=GitHubStatuses(TOKEN, api_url=github.url, max_wait=1))
    assert [post(Phase.SUCCEEDED), post(Phase.PENDING)] == [0, 0]
    assert len(github.statuses) == 3


def test_a_pending_init_container_job_of_a_left_commit_is_posted_as_error_first(
    github: FakeGitHub,
) -> None:
    new = "b" * 40
    env = {"apiVersion": "catalyst.catalyst.dev/v1alpha1", "kind": "Environment",
           "metadata": {"name": "pr-1", "namespace": "ns", "uid": "u"},
           "spec": {"projectRef": {"name": "shop"}, "type": "development",
                    "sources": [{"name": "app", "branch": "main", "commitSha": new}]}}  # fmt: skip
    annotation = "devjobs.dev/github-state.app.seed"
    web: dict[str, Any] = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "annotations": {annotation: f"pending@{SHA}"},
        },
        "spec": {},
    }
    kube = RecordingKube()
    reporting = Reporting(github=GitHubStatuses(TOKEN, api_url=github.url, max_wait=1))
    observed = observe(env, plan=init_plan("busybox:1"), deployment=web)
    decision = decide(observed)
    pending_new = JobState(source="app", job="seed", phase=Phase.PENDING, reason="Waiting",
                           exit_code=None, started=None, finished=None, message="",
                           commit=new, job_name=None)  # fmt: skip
    made = reporting.post_statuses(kube, observed, {"app/seed": pending_new},
                                   decision.init_cancelled)  # fmt: skip
    assert made == 2
    assert [(s["sha"], s["state"]) for s in github.statuses] == [(SHA, "error"), (new, "pending")]
    assert github.statuses[0]["description"].startswith("Cancelled: superseded by commit bbbbbbb")
    # Recorded on the workload in that order: the new commit's pending is what stays.
    recorded = [b["metadata"]["annotations"][annotation] for _, _, b in kube.made]
    assert recorded == [f"error@{SHA}", f"pending@{new}"]
    assert github.violations == []
