"""The controller reports as `devjobs run` does: log tails kept when a Job ends, GitHub
commit statuses when a token is configured, and GitHub failures only as Warning Events.

Real parts: the tier-2 node runs the jobs' pods; the controller runs in this process
(`Controller.run` on a thread, as `devjobs controller` does) with the plan given
directly (its sources name a github.com repository, which the test cannot clone, so the
jobs run with an empty workspace); GitHub is `tests/fake_github.py`, which refuses any
request that breaks the documented contract.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devjobs.controller import act, reporting
from devjobs.controller.decide import Settings, decide
from devjobs.controller.main import Config, Controller
from devjobs.controller.observe import observe
from devjobs.github.statuses import CONTROLLER_TOKEN_VARIABLES, GitHubStatuses, from_environment
from devjobs.kube.client import Kube, connect
from devjobs.kube.jobstate import JobState, Phase
from devjobs.kube.logstore import read_log_tail
from devjobs.kube.podspec import RenderOptions
from devjobs.resolver.models import JobConfig, JobPlan, RunAs, Trigger
from tests.catalyst import Catalyst, environment, job_config, job_plan, wait
from tests.fake_github import FakeGitHub, fake_github

SHA = "c0ffee0" + "1" * 33
TOKEN = "ghs-test-token-5d1f"
REPOSITORY = "https://github.com/acme/shop"


def job(name: str, trigger: Trigger, script: str, image: str, **fields: Any) -> JobConfig:
    return job_config(name, trigger, "app", script, image, "/workspaces/shop", **fields)


def plan(image: str) -> JobPlan:
    return job_plan(
        {"app": REPOSITORY},
        job("check", Trigger.POST_BUILD, "echo hello from check; echo second line", image),
        job("lint", Trigger.POST_BUILD, "echo lint found 2 problems >&2; exit 3", image),
    )


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with fake_github(TOKEN) as fake:
        yield fake


def statuses_client(github: FakeGitHub) -> GitHubStatuses:
    """Commit statuses to the fake GitHub with the token it accepts."""
    return GitHubStatuses(TOKEN, api_url=github.url, max_wait=1)


@pytest.fixture
def catalyst(
    kube_client: Any, catalyst_crds: list[str], project_crds: list[str], kube_node: Any,
    namespace: str,
) -> Catalyst:  # fmt: skip
    """Catalyst in the test's namespace, with the node's image; nothing created yet."""
    return Catalyst(kube_client, namespace, kube_node.test_image)


@contextmanager
def running(
    kube_api: Any, namespace: str, the_plan: JobPlan, statuses: GitHubStatuses | None
) -> Iterator[Controller]:
    """The controller of `namespace` on a thread, resolving every Project to `the_plan`;
    stopped on leaving."""
    config = Config(
        namespaces=(namespace,),
        project_namespace=None,
        settings=Settings(render=RenderOptions(workspace="empty")),
    )
    controller = Controller(
        connect(Path(kube_api.kubeconfig)), config,
        resolver=lambda project, env, cache: the_plan, github=statuses,
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield controller
    finally:
        stop.set()
        thread.join(10)


def assert_a_restart_posts_nothing(
    kube_api: Any, namespace: str, the_plan: JobPlan, github: FakeGitHub, pause: float
) -> None:
    """A new controller (remembering nothing) reconciles and posts no status again."""
    before = len(github.statuses)
    with running(kube_api, namespace, the_plan, statuses_client(github)) as second:
        wait("the restarted controller to reconcile", lambda: second.stats.reconciles > 0, 30)
        time.sleep(pause)  # room for any status it would post
    assert len(github.statuses) == before, github.statuses[before:]
    assert second.stats.errors == 0


@pytest.mark.tier2
def test_finished_jobs_keep_their_log_tails_and_post_commit_statuses(
    kube_api: Any, kube_client: Any, namespace: str, catalyst: Catalyst, github: FakeGitHub
) -> None:
    with running(kube_api, namespace, plan(catalyst.image), statuses_client(github)) as controller:
        catalyst.create(REPOSITORY, SHA)
        catalyst.built(SHA)

        conds = catalyst.wait_conditions(
            "both jobs to end",
            {"Job.app.check": "True", "Job.app.lint": "False"},
            90,
            # Each tail joins its condition once the log is kept, a reconcile after
            # the job ended: wait for both, not just the one that came first.
            until=lambda c: (
                "lint found" in c["Job.app.lint"]["message"]
                and "second line" in c["Job.app.check"]["message"]
            ),
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
        assert read_log_tail(Kube(kube_client), namespace, "pr-1", "app/check") == {
            "check": "hello from check\nsecond line\n"
        }
        assert read_log_tail(Kube(kube_client), namespace, "pr-1", "app/lint") == {
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
    assert controller.stats.errors == 0
    assert_a_restart_posts_nothing(kube_api, namespace, plan(catalyst.image), github, pause=2)


@pytest.mark.tier2
def test_a_github_failure_is_a_warning_event_never_a_job_failure(
    kube_api: Any,
    namespace: str,
    catalyst: Catalyst,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ok = plan(catalyst.image)
    ok = JobPlan(sources=ok.sources, jobs=ok.jobs[:1])  # only `check`, which succeeds
    monkeypatch.setenv("DEVJOBS_GITHUB_TOKEN", "not-the-token")  # GitHub answers 401
    statuses = from_environment(os.environ, CONTROLLER_TOKEN_VARIABLES, api_url=github.url)
    assert statuses is not None
    with running(kube_api, namespace, ok, statuses):
        catalyst.create(REPOSITORY, SHA)
        catalyst.built(SHA)
        conds = catalyst.wait_conditions("check to succeed", {"Job.app.check": "True"}, 90)
        assert conds["JobsSucceeded"]["status"] == "True"
        (event, *_) = wait("a Warning event", lambda: catalyst.events("GitHubStatusFailed"), 30)
        assert event.type == "Warning"
        assert "401" in event.message and "not-the-token" not in event.message
        assert github.statuses == []


# --- InitContainer jobs: statuses from the workload's pods, kept on the Deployment -----


def init_plan(image: str) -> JobPlan:
    return job_plan(
        {"app": REPOSITORY},
        job("check", Trigger.POST_BUILD, "echo checked", image),
        job("migrate", Trigger.PRE_DEPLOY, "echo migrated", image, run_as=RunAs.INIT_CONTAINER),
        job("seed", Trigger.PRE_DEPLOY, "echo seeding; exit 4", image,
            run_as=RunAs.INIT_CONTAINER),
    )  # fmt: skip


@pytest.mark.tier2
def test_init_container_jobs_post_pending_then_their_result_once_across_a_restart(
    kube_api: Any, namespace: str, catalyst: Catalyst, github: FakeGitHub
) -> None:
    the_plan = init_plan(catalyst.image)
    with running(kube_api, namespace, the_plan, statuses_client(github)) as controller:
        catalyst.create(REPOSITORY, SHA)
        # The workload is Ready before the build: the round that adds the init
        # containers must still say pending (that readiness is the old template's).
        catalyst.deploy_web()
        wait("web Ready", lambda: catalyst.apps.read_namespaced_deployment(
            "web", namespace).status.ready_replicas == 1, 60)  # fmt: skip
        catalyst.built(SHA)
        conds = catalyst.wait_conditions(
            "the init container jobs' results",
            {"Job.app.migrate": "True", "Job.app.seed": "False", "Job.app.check": "True"},
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
    assert controller.stats.errors == 0
    assert_a_restart_posts_nothing(kube_api, namespace, the_plan, github, pause=3)
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


def post_init_statuses(
    kube: RecordingKube,
    github: GitHubStatuses,
    env_obj: dict[str, Any],
    web: dict[str, Any],
    states: dict[str, JobState],
    cancelled: tuple[JobState, ...] = (),
) -> int:
    """Decide the InitContainer jobs' statuses from what `web` records, post them as the
    controller's `act` does, and record the posted state on `web` as the API server
    would apply the merge patch; returns how many statuses were posted."""
    observed = observe(env_obj, plan=init_plan("busybox:1"), deployment=web)
    actions = reporting.status_actions(observed, states, cancelled)
    counters = act.Counters()
    before = len(kube.made)
    act.execute(kube, observed.environment, actions, counters, github)
    for _, _, body in kube.made[before:]:
        annotations = web["metadata"].setdefault("annotations", {})
        annotations.update(body["metadata"]["annotations"])
    return counters.writes.get("github-status", 0)


def test_an_init_container_job_is_posted_once_per_state_and_not_pending_after_a_result(
    github: FakeGitHub,
) -> None:
    env = environment("pr-1", "ns", {"app": SHA}, uid="u")
    web: dict[str, Any] = {"metadata": {"name": "web", "namespace": "ns"}, "spec": {}}
    kube = RecordingKube()
    client = statuses_client(github)

    def state(phase: Phase) -> JobState:
        return JobState(source="app", job="seed", phase=phase, reason=phase.value,
                        exit_code=None, started=None, finished=None, message="",
                        commit=SHA, job_name=None)  # fmt: skip

    def post(phase: Phase) -> int:
        return post_init_statuses(kube, client, env, web, {"app/seed": state(phase)})

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
    # A new process (a new client) reads what was posted from the Deployment and posts
    # nothing again.
    client = statuses_client(github)
    assert [post(Phase.SUCCEEDED), post(Phase.PENDING)] == [0, 0]
    assert len(github.statuses) == 3


def test_a_pending_init_container_job_of_a_left_commit_is_posted_as_error_first(
    github: FakeGitHub,
) -> None:
    new = "b" * 40
    env = environment("pr-1", "ns", {"app": new}, uid="u")
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
    observed = observe(env, plan=init_plan("busybox:1"), deployment=web)
    decision = decide(observed)
    pending_new = JobState(source="app", job="seed", phase=Phase.PENDING, reason="Waiting",
                           exit_code=None, started=None, finished=None, message="",
                           commit=new, job_name=None)  # fmt: skip
    made = post_init_statuses(
        kube, statuses_client(github), env, web, {"app/seed": pending_new},
        decision.init_cancelled,
    )  # fmt: skip
    assert made == 2
    assert [(s["sha"], s["state"]) for s in github.statuses] == [(SHA, "error"), (new, "pending")]
    assert github.statuses[0]["description"].startswith("Cancelled: superseded by commit bbbbbbb")
    # Recorded on the workload in that order: the new commit's pending is what stays.
    recorded = [b["metadata"]["annotations"][annotation] for _, _, b in kube.made]
    assert recorded == [f"error@{SHA}", f"pending@{new}"]
    assert github.violations == []
