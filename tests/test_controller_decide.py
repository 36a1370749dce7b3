"""The controller's pure core: `reconcile(observed) -> actions` for every lifecycle rule.

A small in-memory "cluster" applies the actions the way the API server would (Jobs get
created, deleted, conditions merged), so the tests can also pin convergence: after the
actions are applied, the next reconcile asks for nothing (an idle controller writes
nothing)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from devjobs.controller import decide
from devjobs.controller.actions import (
    Action,
    ApplyWorkload,
    ClearManualRequest,
    CreateJob,
    DeleteJob,
    RecordEvent,
    WriteConditions,
)
from devjobs.controller.decide import reconcile
from devjobs.controller.observe import manual_request, observe, workload_obs
from devjobs.kube.conditions import PRE_DEPLOY_GATE, merge_conditions
from devjobs.kube.jobstate import Phase
from devjobs.kube.vocabulary import ANNOTATION_RUN as RUN_ANNOTATION
from devjobs.kube.vocabulary import init_github_state_annotation
from devjobs.resolver.models import JobConfig, JobPlan, RunAs, Trigger
from tests import catalyst
from tests.catalyst import environment, job_plan, ready_condition
from tests.catalyst import job_config as job

SHA1 = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
SHA2 = "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
NS = "env-pr-1"
NOW = datetime(2024, 5, 1, tzinfo=UTC)
REPOSITORY = "https://git.example/web.git"


def plan_of(*jobs: JobConfig) -> JobPlan:
    return job_plan({"web": REPOSITORY}, *jobs)


PLAN = plan_of(
    job("build-check", Trigger.POST_BUILD),
    job("migrate", Trigger.PRE_DEPLOY),
    job("seed", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER),
    job("smoke", Trigger.POST_DEPLOY),
    job("lint", Trigger.MANUAL),
)


def env_dict(sha: str = SHA1, phase: str = "Ready") -> dict[str, Any]:
    """Environment `pr-1` at `sha` as stored, in `phase`, with Catalyst's Ready condition."""
    status = {"phase": phase, "conditions": [ready_condition()]}
    return environment("pr-1", NS, {"web": sha}, uid="uid-1", generation=2, status=status)


def build_job(sha: str, state: str = "Complete") -> dict[str, Any]:
    """Catalyst's build of `web` at `sha` as observed: ended in `state` ("": running)."""
    return catalyst.build_job("web", sha, NS, state=state, created="2024-01-01T00:00:00Z")


def deployment(image: str = "busybox:1", ready: bool = True, inits: Any = ()) -> dict[str, Any]:
    return catalyst.deployment(namespace=NS, image=image, inits=inits, ready=ready)


@dataclass
class Cluster:
    """The objects one Environment's reconcile reads, and the effect of each action."""

    env: dict[str, Any] = field(default_factory=env_dict)
    plan: JobPlan | None = PLAN
    plan_error: str | None = None
    project: dict[str, Any] | None = field(
        default_factory=lambda: catalyst.project({"web": REPOSITORY}, builds=["web"])
    )
    builds: list[dict[str, Any]] = field(default_factory=list)
    deployment: dict[str, Any] | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, RecordEvent] = field(default_factory=dict)
    workload_patches: list[dict[str, Any]] = field(default_factory=list)
    workload_pods: list[dict[str, Any]] = field(default_factory=list)

    def observed(self) -> Any:
        return observe(
            self.env,
            plan=self.plan,
            plan_error=self.plan_error,
            project=self.project,
            build_jobs=self.builds,
            deployment=self.deployment,
            jobs=list(self.jobs.values()),
            workload_pods=self.workload_pods,
        )

    def reconcile(self) -> list[Action]:
        return reconcile(self.observed())

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, CreateJob):
                manifest = copy.deepcopy(dict(action.manifest))
                manifest["metadata"]["creationTimestamp"] = (
                    f"2024-01-01T00:00:{len(self.jobs):02d}Z"
                )
                self.jobs[action.name] = manifest
            elif isinstance(action, DeleteJob):
                del self.jobs[action.name]
            elif isinstance(action, WriteConditions):
                status = self.env.setdefault("status", {})
                kept = [c for c in status.get("conditions", []) if c["type"] not in action.remove]
                merged = merge_conditions(kept, action.conditions, now=NOW)
                removed = len(kept) != len(status.get("conditions", []))
                assert merged is not None or removed, "a write that changes nothing"
                status["conditions"] = merged if merged is not None else kept
            elif isinstance(action, ClearManualRequest):
                annotations = self.env["metadata"].get("annotations", {})
                if annotations.get(RUN_ANNOTATION) == action.value:
                    del annotations[RUN_ANNOTATION]
            elif isinstance(action, RecordEvent):
                self.events[action.name] = action
            elif isinstance(action, ApplyWorkload):
                self.workload_patches.append(dict(action.patch))
                assert self.deployment is not None
                inits = action.patch["spec"]["template"]["spec"]["initContainers"]
                defaulted = [{**c, "terminationMessagePath": "/dev/termination-log"} for c in inits]
                template = self.deployment["spec"]["template"]
                template["spec"]["initContainers"] = defaulted
                labels = (action.patch["spec"]["template"].get("metadata") or {}).get("labels")
                # Server-side apply: devjobs' labels are the patch's, Catalyst's stay.
                meta = template.setdefault("metadata", {})
                catalysts = {k: v for k, v in (meta.get("labels") or {}).items()
                             if not k.startswith("devjobs.dev/")}  # fmt: skip
                meta["labels"] = {**catalysts, **(labels or {})}

    def settle(self, rounds: int = 5) -> list[Action]:
        """Reconcile and apply until nothing is asked for; all actions taken, in order."""
        taken: list[Action] = []
        for _ in range(rounds):
            actions = self.reconcile()
            if not actions:
                return taken
            taken += actions
            self.apply(actions)
        raise AssertionError(f"no convergence after {rounds} rounds: {actions}")

    def finish(self, trigger: str, state: str = "Complete") -> None:
        for obj in self.jobs.values():
            if obj["metadata"]["labels"]["devjobs.dev/trigger"] == trigger:
                obj["status"] = {"conditions": [{"type": state, "status": "True"}]}

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.env["status"]["conditions"]}

    def job_names(self, trigger: str | None = None) -> set[str]:
        return {
            n
            for n, o in self.jobs.items()
            if trigger is None or o["metadata"]["labels"]["devjobs.dev/trigger"] == trigger
        }


def kinds(actions: Sequence[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


# --- PostBuild / PreDeploy -----------------------------------------------------------


def test_nothing_runs_while_the_builds_of_the_commit_are_missing() -> None:
    cluster = Cluster()
    cluster.settle()
    assert cluster.jobs == {}
    conds = cluster.conditions()
    assert conds["Job.web.build-check"]["status"] == "Unknown"
    assert conds["Job.web.build-check"]["reason"] == "Waiting"
    assert conds["Job.web.build-check"]["message"].startswith("commit 1111111: waiting")
    assert conds["Ready"] == ready_condition()  # Catalyst's condition untouched


def test_ready_phase_alone_never_fires_post_build_when_the_project_has_builds() -> None:
    cluster = Cluster(builds=[build_job(SHA2)])  # an old commit's build succeeded
    cluster.settle()
    assert cluster.jobs == {}


def test_a_running_build_does_not_fire_post_build() -> None:
    cluster = Cluster(builds=[build_job(SHA1, state="")])
    cluster.settle()
    assert cluster.jobs == {}


def test_succeeded_build_of_the_commit_creates_post_build_and_pre_deploy_jobs() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    actions = cluster.reconcile()
    assert kinds(actions) == ["CreateJob", "CreateJob"]  # conditions wait for the next round
    cluster.apply(actions)
    assert {o["metadata"]["labels"]["devjobs.dev/trigger"] for o in cluster.jobs.values()} == {
        "PostBuild",
        "PreDeploy",
    }
    for obj in cluster.jobs.values():
        assert obj["metadata"]["annotations"]["devjobs.dev/commit"] == SHA1
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert obj["metadata"]["namespace"] == NS
    cluster.settle()
    assert cluster.conditions()["Job.web.migrate"]["status"] == "Unknown"
    assert cluster.conditions()["PreDeployJobsSucceeded"]["status"] == "Unknown"


def test_without_builds_post_build_fires_when_the_environment_leaves_provisioning() -> None:
    cluster = Cluster(env=env_dict(phase="Provisioning"), project={"spec": {}})
    cluster.settle()
    assert cluster.jobs == {}
    cluster.env["status"]["phase"] = "Ready"
    cluster.settle()
    assert len(cluster.job_names("PostBuild")) == 1


def test_without_builds_post_build_fires_once_the_workload_exists_while_provisioning() -> None:
    """The phase waits for the first pod to be Ready, which waits on the PreDeploy gate:
    PostBuild and PreDeploy cannot wait for the phase (controller.gates)."""
    cluster = Cluster(env=env_dict(phase="Provisioning"), project={"spec": {}})
    cluster.deployment = deployment(ready=False)
    cluster.settle()
    assert len(cluster.job_names("PostBuild")) == 1
    assert len(cluster.job_names("PreDeploy")) == 1


def test_build_jobs_present_without_a_project_template_are_still_waited_for() -> None:
    cluster = Cluster(project=None, builds=[build_job(SHA1, state="")])
    cluster.settle()
    assert cluster.jobs == {}
    cluster.builds = [build_job(SHA1)]
    cluster.settle()
    assert len(cluster.job_names("PostBuild")) == 1


def test_failed_build_reports_jobs_failed_and_runs_nothing() -> None:
    cluster = Cluster(builds=[build_job(SHA1, state="Failed")])
    cluster.settle()
    assert cluster.jobs == {}
    conds = cluster.conditions()
    assert conds["Job.web.build-check"]["status"] == "False"
    assert conds["Job.web.build-check"]["reason"] == "BuildFailed"
    assert conds["JobsSucceeded"]["status"] == "False"


def test_an_idle_environment_gets_no_actions_at_all() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    cluster.settle()
    cluster.finish("PostBuild")
    cluster.finish("PreDeploy")
    cluster.settle()
    assert cluster.reconcile() == []
    assert cluster.reconcile() == []


def test_restart_finds_its_jobs_and_creates_nothing_twice() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    cluster.apply(cluster.reconcile())
    before = set(cluster.jobs)
    # A new controller process observes the same cluster: no CreateJob.
    assert not [a for a in cluster.reconcile() if isinstance(a, CreateJob)]
    assert set(cluster.jobs) == before


def test_fired_points_are_remembered_when_build_jobs_are_garbage_collected() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    cluster.settle()
    cluster.builds = []
    assert not [a for a in cluster.reconcile() if isinstance(a, (CreateJob, DeleteJob))]
    assert cluster.conditions()["Job.web.build-check"]["reason"] != "Waiting"


# --- job results as conditions --------------------------------------------------------


def test_succeeded_and_failed_jobs_become_conditions_of_the_current_commit() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    cluster.settle()
    cluster.finish("PostBuild")
    cluster.finish("PreDeploy", "Failed")
    cluster.settle()
    conds = cluster.conditions()
    assert conds["Job.web.build-check"]["status"] == "True"
    assert conds["Job.web.build-check"]["message"].startswith("commit 1111111: ")
    assert conds["Job.web.migrate"]["status"] == "False"
    assert conds["PreDeployJobsSucceeded"]["status"] == "False"
    assert conds["JobsSucceeded"]["status"] == "False"
    assert conds["Job.web.smoke"]["reason"] == "PreDeployFailed"


# --- PostDeploy ---------------------------------------------------------------------------


def test_post_deploy_waits_for_pre_deploy_and_a_ready_workload_of_the_commit() -> None:
    cluster = Cluster(builds=[build_job(SHA1)], deployment=deployment(ready=False))
    cluster.settle()
    cluster.finish("PostBuild")
    cluster.finish("PreDeploy")
    cluster.settle()
    assert cluster.job_names("PostDeploy") == set()
    assert cluster.deployment is not None
    cluster.deployment["status"]["readyReplicas"] = 1
    cluster.deployment["status"]["availableReplicas"] = 1
    cluster.settle()
    assert len(cluster.job_names("PostDeploy")) == 1
    assert cluster.conditions()["Job.web.seed"]["status"] == "True"


def test_post_deploy_does_not_fire_for_a_workload_still_on_the_old_commit() -> None:
    old = f"registry.default.svc.cluster.local:5000/shop/web-pr-1:{SHA2}"
    cluster = Cluster(builds=[build_job(SHA1)], plan=plan_of(job("smoke", Trigger.POST_DEPLOY)))
    cluster.deployment = deployment(image=old)
    cluster.settle()
    assert cluster.jobs == {}
    cluster.deployment = deployment(image=old.replace(SHA2, SHA1))
    cluster.settle()
    assert len(cluster.job_names("PostDeploy")) == 1


# --- PreDeploy init containers ------------------------------------------------------------


def test_init_container_jobs_are_applied_once_to_the_workload() -> None:
    cluster = Cluster(builds=[build_job(SHA1)], deployment=deployment(ready=False))
    taken = cluster.settle()
    patches = [a for a in taken if isinstance(a, ApplyWorkload)]
    assert len(patches) == 1
    names = [c["name"] for c in patches[0].patch["spec"]["template"]["spec"]["initContainers"]]
    assert any("seed" in n for n in names)
    # Server defaults on the stored containers do not make it apply again.
    assert not [a for a in cluster.reconcile() if isinstance(a, ApplyWorkload)]


def test_init_containers_devjobs_no_longer_wants_are_removed() -> None:
    stale = {"name": "devjobs-web-old", "image": "busybox:1"}
    cluster = Cluster(
        builds=[build_job(SHA1)],
        plan=plan_of(job("build-check", Trigger.POST_BUILD)),
        deployment=deployment(inits=[stale, {"name": "catalyst-init", "image": "x"}]),
    )
    actions = cluster.reconcile()
    patch = next(a for a in actions if isinstance(a, ApplyWorkload)).patch
    assert patch["spec"]["template"]["spec"]["initContainers"] == []


def test_no_workload_patch_before_the_workload_exists() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    assert not [a for a in cluster.settle() if isinstance(a, ApplyWorkload)]


# --- a new commit ---------------------------------------------------------------------


def test_new_commit_cancels_unfinished_jobs_and_reports_only_the_new_commit() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    cluster.settle()
    cluster.finish("PostBuild")  # finished: kept, not cancelled
    cluster.settle()
    assert cluster.conditions()["Job.web.build-check"]["status"] == "True"
    running = cluster.job_names("PreDeploy")
    cluster.env["spec"]["sources"][0]["commitSha"] = SHA2
    actions = cluster.reconcile()
    deletes = [a for a in actions if isinstance(a, DeleteJob)]
    assert {d.name for d in deletes} == running
    assert all(d.reason == "NewCommit" and d.commit == SHA1 for d in deletes)
    events = [a for a in actions if isinstance(a, RecordEvent)]
    assert [e.reason for e in events] == ["Cancelled"]
    assert events[0].message == "web/migrate at commit 1111111 cancelled: commit 2222222 started"
    cluster.apply(actions)
    cluster.settle()
    conds = cluster.conditions()
    # The old commit's success is not shown as the new commit's result.
    assert conds["Job.web.build-check"]["status"] == "Unknown"
    assert conds["Job.web.build-check"]["message"].startswith("commit 2222222: waiting")
    assert conds["JobsSucceeded"]["status"] == "Unknown"
    cluster.builds.append(build_job(SHA2))
    cluster.settle()
    new = {cluster.jobs[n]["metadata"]["annotations"]["devjobs.dev/commit"] for n in cluster.jobs}
    assert SHA2 in new


def test_the_same_cancellation_event_is_recorded_under_one_name() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    cluster.settle()
    cluster.env["spec"]["sources"][0]["commitSha"] = SHA2
    first = [a for a in cluster.reconcile() if isinstance(a, RecordEvent)]
    again = [a for a in cluster.reconcile() if isinstance(a, RecordEvent)]
    assert [e.name for e in first] == [e.name for e in again]


def test_a_changed_job_spec_at_the_same_commit_supersedes_the_unfinished_job() -> None:
    cluster = Cluster(builds=[build_job(SHA1)], plan=plan_of(job("t", Trigger.POST_BUILD)))
    cluster.settle()
    (old,) = cluster.jobs
    cluster.plan = plan_of(job("t", Trigger.POST_BUILD, command=["sh", "-c", "exit 0"]))
    actions = cluster.reconcile()
    assert [(type(a).__name__, getattr(a, "reason", "")) for a in actions][:1] == [
        ("DeleteJob", "Superseded")
    ]
    cluster.apply(actions)
    assert old not in cluster.jobs and len(cluster.jobs) == 1


# --- Manual ------------------------------------------------------------------------------


def request(cluster: Cluster, value: str, time: str = "2024-05-01T10:00:00Z") -> None:
    meta = cluster.env["metadata"]
    meta.setdefault("annotations", {})[RUN_ANNOTATION] = value
    meta["managedFields"] = [
        {
            "manager": "devjobs-ui",
            "operation": "Update",
            "time": time,
            "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{RUN_ANNOTATION}": {}}}},
        }
    ]


def test_manual_request_starts_the_jobs_and_is_cleared() -> None:
    cluster = Cluster(env=env_dict(phase="Provisioning"))
    request(cluster, "lint")
    actions = cluster.reconcile()
    assert kinds(actions) == ["CreateJob", "ClearManualRequest"]
    cluster.apply(actions)
    assert RUN_ANNOTATION not in cluster.env["metadata"]["annotations"]
    (name,) = cluster.job_names("Manual")
    rid = manual_request(
        {
            **cluster.env,
            "metadata": {**cluster.env["metadata"], "annotations": {RUN_ANNOTATION: "lint"}},
        }
    )
    assert rid is not None
    assert cluster.jobs[name]["metadata"]["annotations"]["devjobs.dev/request"] == rid.request_id
    cluster.settle()
    assert cluster.conditions()["Job.web.lint"]["status"] == "Unknown"


def test_manual_request_seen_again_after_a_restart_creates_nothing_twice() -> None:
    cluster = Cluster()
    request(cluster, "lint")
    actions = cluster.reconcile()
    cluster.apply([a for a in actions if isinstance(a, CreateJob)])  # crash before clearing
    again = cluster.reconcile()
    assert "CreateJob" not in kinds(again)
    assert "ClearManualRequest" in kinds(again)


def test_asking_again_starts_a_new_run_of_the_same_job() -> None:
    cluster = Cluster()
    request(cluster, "lint")
    cluster.settle()
    request(cluster, "web/lint", time="2024-05-01T11:00:00Z")
    cluster.settle()
    assert len(cluster.job_names("Manual")) == 2


def test_manual_request_for_unknown_or_init_container_jobs_warns_and_is_cleared() -> None:
    cluster = Cluster()
    request(cluster, "nope, seed")
    actions = [a for a in cluster.reconcile() if not isinstance(a, WriteConditions)]
    assert kinds(actions) == ["ClearManualRequest", "RecordEvent"]
    event = actions[1]
    assert isinstance(event, RecordEvent) and event.type == "Warning"
    assert "nope" in event.message and "init container" in event.message


def test_unfinished_manual_jobs_of_the_current_commit_are_kept_of_an_old_one_cancelled() -> None:
    cluster = Cluster()
    request(cluster, "lint")
    cluster.settle()
    assert not [a for a in cluster.reconcile() if isinstance(a, DeleteJob)]
    cluster.env["spec"]["sources"][0]["commitSha"] = SHA2
    deletes = [a for a in cluster.reconcile() if isinstance(a, DeleteJob)]
    assert [d.key for d in deletes] == ["web/lint"]


# --- plan errors -------------------------------------------------------------------------


def test_plan_error_is_reported_and_hides_the_earlier_commit_results() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    cluster.settle()
    cluster.finish("PostBuild")
    cluster.settle()
    cluster.plan, cluster.plan_error = None, "project.yaml:3:1: bad"
    cluster.settle()
    conds = cluster.conditions()
    assert conds["JobsSucceeded"]["reason"] == "PlanFailed"
    assert "project.yaml:3:1: bad" in conds["JobsSucceeded"]["message"]
    assert conds["Job.web.build-check"]["status"] == "Unknown"
    assert cluster.reconcile() == []


def test_jobs_dropped_from_the_plan_have_their_conditions_removed_and_others_kept() -> None:
    cluster = Cluster(builds=[build_job(SHA1)])
    cluster.settle()
    assert "Job.web.smoke" in cluster.conditions()
    cluster.plan = plan_of(job("build-check", Trigger.POST_BUILD))
    actions = cluster.settle()
    (write,) = [a for a in actions if isinstance(a, WriteConditions)]
    assert set(write.remove) == {"Job.web.migrate", "Job.web.seed", "Job.web.smoke"}
    assert set(cluster.conditions()) == {
        "Ready", "Job.web.build-check", "JobsSucceeded", PRE_DEPLOY_GATE,
    }  # fmt: skip
    assert cluster.conditions()["Ready"] == ready_condition()
    assert cluster.reconcile() == []


# --- InitContainer jobs: results from the workload's pods ----------------------------


def _workload_pod(cluster: Cluster, codes: dict[str, Any], name: str = "web-1") -> dict[str, Any]:
    """A workload pod as the Deployment controller makes it from the current template,
    with an init container status per entry of `codes` (exit code, or a waiting reason)."""
    assert cluster.deployment is not None
    template = cluster.deployment["spec"]["template"]
    statuses = []
    for cname, code in codes.items():
        if isinstance(code, int):
            state: dict[str, Any] = {"terminated": {"exitCode": code}}
            last: dict[str, Any] = {}
            if code != 0:  # restartPolicy Always: back off, the last failure in lastState
                state, last = {"waiting": {"reason": "CrashLoopBackOff"}}, state
        else:
            state, last = {"waiting": {"reason": code, "message": "no such image"}}, {}
        statuses.append({"name": cname, "state": state, "lastState": last})
    return {
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2024-01-01T00:01:00Z",
                     "labels": dict(template["metadata"]["labels"])},
        "spec": _admitted(copy.deepcopy(template["spec"])),
        "status": {"initContainerStatuses": statuses},
    }  # fmt: skip


def _admitted(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """What ServiceAccount admission does to a pod: a token volume mount in every container."""
    for container in pod_spec.get("initContainers", []) + pod_spec.get("containers", []):
        mount = {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io"}
        container["volumeMounts"] = [*container.get("volumeMounts", []), mount]
    return pod_spec


def test_an_init_container_job_that_fails_in_the_workload_pod_is_reported_failed() -> None:
    cluster = Cluster(builds=[build_job(SHA1)], deployment=deployment(ready=False))
    cluster.settle()
    (patch,) = cluster.workload_patches
    assert patch["spec"]["template"]["metadata"]["labels"] == {"devjobs.dev/workload": "pr-1"}
    assert cluster.conditions()["Job.web.seed"]["status"] == "Unknown"
    cluster.workload_pods = [_workload_pod(cluster, {"devjobs-clone-web": 0,
                                                     "devjobs-web-seed": 4})]  # fmt: skip
    cluster.settle()
    seed = cluster.conditions()["Job.web.seed"]
    assert (seed["status"], seed["reason"]) == ("False", "Failed")
    assert "devjobs-web-seed" in seed["message"] and "code 4" in seed["message"]
    assert cluster.conditions()["JobsSucceeded"]["status"] == "False"
    assert cluster.reconcile() == []


def test_a_failed_clone_blocks_the_init_container_jobs_after_it() -> None:
    cluster = Cluster(builds=[build_job(SHA1)], deployment=deployment(ready=False))
    cluster.settle()
    cluster.workload_pods = [_workload_pod(cluster, {"devjobs-clone-web": "ErrImagePull"})]
    cluster.settle()
    seed = cluster.conditions()["Job.web.seed"]
    assert (seed["status"], seed["reason"]) == ("False", "Blocked")
    assert "devjobs-clone-web" in seed["message"] and "ErrImagePull" in seed["message"]


def test_init_container_runs_of_an_older_spec_do_not_count() -> None:
    cluster = Cluster(builds=[build_job(SHA1)], deployment=deployment(ready=False))
    cluster.settle()
    old = _workload_pod(cluster, {"devjobs-clone-web": 0, "devjobs-web-seed": 4})
    for container in old["spec"]["initContainers"]:
        for env in container.get("env", []):
            if env["name"] == "DEVJOBS_REVISION":
                env["value"] = SHA2  # the pod of the previous rollout
    cluster.workload_pods = [old]
    cluster.settle()
    assert cluster.conditions()["Job.web.seed"]["status"] == "Unknown"
    new = _workload_pod(cluster, {"devjobs-clone-web": 0, "devjobs-web-seed": 0}, "web-2")
    cluster.workload_pods = [new, old]
    cluster.settle()
    seed = cluster.conditions()["Job.web.seed"]
    assert (seed["status"], seed["reason"]) == ("True", "Succeeded")


def test_init_container_jobs_get_commit_statuses_once_their_patch_is_applied() -> None:
    # No statuses before the patch carrying them is applied (no build yet).
    cluster = Cluster(deployment=deployment(ready=True))
    assert decide.decide(cluster.observed()).init_statuses == {}
    # The round that applies it: pending, even though the workload (its old template,
    # which never ran these containers) is Ready.
    cluster.builds = [build_job(SHA1)]
    first = decide.decide(cluster.observed())
    assert any(isinstance(a, ApplyWorkload) for a in first.actions)
    (key, state), *more = first.init_statuses.items()
    assert not more and key == "web/seed"
    assert (state.phase, state.commit) == (Phase.PENDING, SHA1)
    cluster.apply(first.actions)
    assert cluster.deployment is not None
    cluster.deployment["status"] = {"observedGeneration": 1}  # rolling out, nothing ready
    cluster.settle()
    assert decide.decide(cluster.observed()).init_statuses[key].phase is Phase.PENDING
    # Its init container's result, at the commit it ran.
    cluster.workload_pods = [_workload_pod(cluster, {"devjobs-clone-web": 0,
                                                     "devjobs-web-seed": 4})]  # fmt: skip
    failed = decide.decide(cluster.observed()).init_statuses[key]
    assert (failed.phase, failed.reason, failed.commit) == (Phase.FAILED, "Failed", SHA1)
    # A new commit: its patch is applied, pending again at that commit.
    cluster.env["spec"]["sources"][0]["commitSha"] = SHA2
    cluster.builds.append(build_job(SHA2))
    again = decide.decide(cluster.observed())
    assert any(isinstance(a, ApplyWorkload) for a in again.actions)
    assert (again.init_statuses[key].phase, again.init_statuses[key].commit) == (
        Phase.PENDING, SHA2,
    )  # fmt: skip


def test_the_posted_init_container_states_are_read_back_from_the_deployment() -> None:
    annotation = init_github_state_annotation("web/seed")
    assert annotation == "devjobs.dev/github-state.web.seed"
    dep = deployment()
    dep["metadata"]["annotations"] = {annotation: f"failure@{SHA1}", "other": "x"}
    workload = workload_obs(dep)
    assert workload.github_state("web/seed", SHA1) == "failure"
    assert workload.github_state("web/seed", SHA2) is None
    assert workload.github_state("web/migrate", SHA1) is None
    long = init_github_state_annotation("s" * 40 + "/" + "j" * 40)
    assert len(long.partition("/")[2]) <= 63


def test_a_pending_init_container_job_of_a_left_commit_is_cancelled_at_that_commit() -> None:
    annotation = init_github_state_annotation("web/seed")
    cluster = Cluster(deployment=deployment(), builds=[build_job(SHA1)])
    cluster.settle()
    # Posted pending at SHA1 (recorded on the workload), still pending: nothing to cancel.
    assert cluster.deployment is not None
    cluster.deployment["metadata"]["annotations"] = {annotation: f"pending@{SHA1}"}
    assert decide.decide(cluster.observed()).init_cancelled == ()
    # The Environment moves to SHA2 (no build yet, so no new patch): SHA1 gets `error`.
    cluster.env["spec"]["sources"][0]["commitSha"] = SHA2
    (cancelled,) = decide.decide(cluster.observed()).init_cancelled
    assert (cancelled.key, cancelled.commit, cancelled.phase, cancelled.reason) == (
        "web/seed", SHA1, Phase.CANCELLED, "Superseded",
    )  # fmt: skip
    assert cancelled.message.startswith(f"superseded by commit {SHA2[:7]}")
    # Once a result (or that error) is recorded for SHA1, or pending at SHA2: nothing.
    for recorded in (f"error@{SHA1}", f"success@{SHA1}", f"pending@{SHA2}"):
        cluster.deployment["metadata"]["annotations"] = {annotation: recorded}
        assert decide.decide(cluster.observed()).init_cancelled == ()


@pytest.mark.parametrize("phase", ["", "Pending", "Provisioning", "Building", "Ready", "Failed"])
def test_every_phase_converges_without_writing_twice(phase: str) -> None:
    cluster = Cluster(env=env_dict(phase=phase), builds=[build_job(SHA1)])
    cluster.settle()
    assert cluster.reconcile() == []
