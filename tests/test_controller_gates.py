"""`controller.gates`: which workload pods held by devjobs' PreDeploy scheduling gate may
start, and `decide` opening them (pure: hand-written observations, no cluster)."""

from __future__ import annotations

from typing import Any

from devjobs.controller import gates
from devjobs.controller.actions import (
    ApplyWorkload,
    CreateJob,
    OpenGate,
    RecordOpenings,
    WriteConditions,
)
from devjobs.controller.decide import reconcile
from devjobs.controller.observe import Observed, gated_pod, observe
from devjobs.kube import openings
from devjobs.kube.vocabulary import (
    ANNOTATION_RUN,
    LABEL_TRIGGER,
    POD_TEMPLATE_HASH_LABEL,
    PREDEPLOY_GATE,
)
from devjobs.resolver.models import JobPlan, RunAs, Trigger
from tests import catalyst
from tests.catalyst import environment, job_plan, ready_condition
from tests.catalyst import job_config as job

SHA1 = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
SHA2 = "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
NS = "env-pr-1"
REPOSITORY = "https://git.example/web.git"
PLAN = job_plan(
    {"web": REPOSITORY},
    job("migrate", Trigger.PRE_DEPLOY),
    job("smoke", Trigger.POST_DEPLOY),
)


def pod(
    name: str = "web-abc",
    image: str = "busybox:1",
    gates_: tuple[str, ...] = (PREDEPLOY_GATE,),
    inits: tuple[dict[str, Any], ...] = (),
    namespace: str = NS,
    template: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "web", "image": image}]}
    if gates_:
        spec["schedulingGates"] = [{"name": g} for g in gates_]
    if inits:
        spec["initContainers"] = [dict(c) for c in inits]
    labels = {"app": "web"}
    if template is not None:
        labels[POD_TEMPLATE_HASH_LABEL] = template
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels}
    return {"metadata": meta, "spec": spec}


def observed(
    pods: list[dict[str, Any]],
    sha: str = SHA1,
    plan: JobPlan = PLAN,
    jobs: list[dict[str, Any]] | None = None,
    phase: str = "Provisioning",
    deployment: dict[str, Any] | None = None,
    configmaps: list[dict[str, Any]] | None = None,
) -> Observed:
    status = {"phase": phase, "conditions": [ready_condition()]}
    env = environment("pr-1", NS, {"web": sha}, uid="uid-1", generation=2, status=status)
    return observe(
        env,
        plan=plan,
        project={"spec": {}},  # no builds: production mode
        deployment=deployment or catalyst.deployment(namespace=NS, ready=False),
        jobs=jobs or [],
        gated_pods=pods,
        configmaps=configmaps or [],
    )


def finished(obs: Observed, state: str = "Complete") -> list[dict[str, Any]]:
    """The Jobs `reconcile` asks for, created and ended in `state`."""
    made = [a for a in reconcile(obs) if isinstance(a, CreateJob)]
    jobs = []
    for action in made:
        manifest = dict(action.manifest)
        manifest["metadata"] = {**manifest["metadata"], "creationTimestamp": "2024-01-01T00:00:00Z"}
        manifest["status"] = {"conditions": [{"type": state, "status": "True"}]}
        jobs.append(manifest)
    return jobs


def opened(obs: Observed) -> list[str]:
    return [a.pod for a in reconcile(obs) if isinstance(a, OpenGate)]


def test_only_pods_held_by_devjobs_gate_are_observed() -> None:
    assert gated_pod(pod(gates_=())) is None
    assert gated_pod(pod(gates_=("someone.else/gate",))) is None
    held = gated_pod(pod(gates_=("someone.else/gate", PREDEPLOY_GATE)))
    assert held is not None and held.gate_index == 1
    gone = pod()
    gone["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert gated_pod(gone) is None
    assert observed([pod(namespace="elsewhere")]).gated_pods == ()


def test_without_builds_pre_deploy_fires_while_provisioning_and_the_pod_waits_for_it() -> None:
    obs = observed([pod()])
    actions = reconcile(obs)
    created = [a for a in actions if isinstance(a, CreateJob)]
    assert len(created) == 1  # the PreDeploy job, although the phase is Provisioning
    assert not any(isinstance(a, OpenGate) for a in actions)  # it has not run yet


def test_the_gate_opens_once_the_pre_deploy_jobs_succeeded() -> None:
    jobs = finished(observed([pod()]))
    (action,) = [a for a in reconcile(observed([pod()], jobs=jobs)) if isinstance(a, OpenGate)]
    assert action == OpenGate("web-abc", "uid-web-abc", 0)


def test_a_failed_pre_deploy_job_keeps_the_gate_and_the_condition_says_why() -> None:
    jobs = finished(observed([pod()]), state="Failed")
    obs = observed([pod()], jobs=jobs)
    actions = reconcile(obs)
    assert not any(isinstance(a, OpenGate) for a in actions)
    (write,) = [a for a in actions if isinstance(a, WriteConditions)]
    conds = {c["type"]: c for c in write.conditions}
    assert conds["Job.web.migrate"]["status"] == "False"
    assert conds["PreDeployJobsSucceeded"]["status"] == "False"
    smoke = conds["Job.web.smoke"]
    assert smoke["reason"] == "PreDeployFailed"
    assert f"1 new workload pod(s) held by the scheduling gate {PREDEPLOY_GATE}" in smoke["message"]


def test_the_previous_commits_success_does_not_open_the_new_commits_pods() -> None:
    jobs = finished(observed([pod()], sha=SHA1))
    # The Environment moves to SHA2: SHA1's Jobs succeeded, SHA2's have not run.
    assert opened(observed([pod()], sha=SHA2, jobs=jobs)) == []


def test_a_pod_tagged_with_a_commit_belongs_to_it() -> None:
    """Helm mode: the build image is tagged with the commit it was built at."""
    image = f"registry.default.svc.cluster.local:5000/shop/web-pr-1:{SHA1}"
    ok = finished(observed([pod(image=image)], sha=SHA1))
    assert opened(observed([pod(image=image)], sha=SHA1, jobs=ok)) == ["web-abc"]
    # A replacement pod of a previous commit whose PreDeploy succeeded starts, also while
    # the current commit's PreDeploy runs; one of a commit whose PreDeploy failed does not.
    assert opened(observed([pod(image=image)], sha=SHA2, jobs=ok)) == ["web-abc"]
    failed = finished(observed([pod(image=image)], sha=SHA1), state="Failed")
    assert opened(observed([pod(image=image)], sha=SHA2, jobs=failed)) == []
    new = pod("web-new", image=image.replace(SHA1, SHA2))
    assert opened(observed([new], sha=SHA2, jobs=ok)) == []


def test_a_pod_without_the_commits_init_containers_stays_gated() -> None:
    """The operator replaced the Deployment spec (production mode, a new image): its
    pods lack devjobs' init containers; only pods of the re-applied spec start."""
    plan = job_plan(
        {"web": REPOSITORY}, job("seed", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER)
    )
    bare = observed([pod()], plan=plan)
    (apply,) = [a for a in reconcile(bare) if isinstance(a, ApplyWorkload)]
    assert opened(bare) == []
    inits = apply.patch["spec"]["template"]["spec"]["initContainers"]
    defaulted = tuple({**c, "terminationMessagePath": "/dev/termination-log"} for c in inits)
    assert opened(observed([pod(inits=defaulted)], plan=plan)) == ["web-abc"]
    stale = tuple({**c, "image": "other:1"} if i == 0 else c for i, c in enumerate(defaulted))
    assert opened(observed([pod(inits=stale)], plan=plan)) == []


def test_a_plan_without_pre_deploy_jobs_opens_at_once_and_held_counts_the_commits_pods() -> None:
    plan = job_plan({"web": REPOSITORY}, job("smoke", Trigger.POST_DEPLOY))
    assert opened(observed([pod()], plan=plan)) == ["web-abc"]
    other = pod("web-old", image=f"r.example/web:{SHA2}")
    assert gates.held(observed([pod(), other]), {"web": SHA1}) == 1


def recorded(obs: Observed) -> list[dict[str, Any]]:
    """The record `reconcile` applies (as the API server would then hold it), if any."""
    return [dict(a.manifest) for a in reconcile(obs) if isinstance(a, RecordOpenings)]


def test_opening_a_pod_records_its_template_and_commit_first_and_only_once() -> None:
    jobs = finished(observed([pod(template="h1")]))
    actions = [
        a for a in reconcile(observed([pod(template="h1")], jobs=jobs))
        if isinstance(a, (RecordOpenings, OpenGate))
    ]  # fmt: skip
    assert [type(a) for a in actions] == [RecordOpenings, OpenGate]
    record = dict(actions[0].manifest)  # type: ignore[union-attr]
    obs = observed([pod(template="h1")], jobs=jobs, configmaps=[record])
    assert obs.openings == (openings.Opening("h1", (SHA1,)),)
    assert recorded(obs) == [] and opened(obs) == ["web-abc"]


def test_a_replacement_of_a_pod_opened_at_an_earlier_commit_starts_while_the_new_one_fails() -> (
    None
):
    """A drained node while the new commit's migrate fails: the previous version's pod
    comes back and serves; the new template's pod stays held (and is what is counted)."""
    first = finished(observed([pod(template="h1")]))
    (record,) = recorded(observed([pod(template="h1")], jobs=first))
    failed = finished(observed([], sha=SHA2), state="Failed")
    again = pod("web-again", template="h1")
    new = pod("web-new", template="h2")
    obs = observed([again, new], sha=SHA2, jobs=[*first, *failed], configmaps=[record])
    assert opened(obs) == ["web-again"]
    assert recorded(obs) == []
    assert gates.held(obs, {"web": SHA2}) == 1


def test_a_replacement_of_a_template_opened_at_a_commit_that_failed_since_stays_gated() -> None:
    first = finished(observed([pod(template="h1")]))
    (record,) = recorded(observed([pod(template="h1")], jobs=first))
    rerun_failed = finished(observed([], sha=SHA1), state="Failed")
    for rerun in rerun_failed:  # a later run of SHA1's migrate, which failed
        rerun["metadata"]["creationTimestamp"] = "2024-01-02T00:00:00Z"
        rerun["metadata"]["name"] += "-2"
    again = pod("web-again", template="h1")
    obs = observed([again], sha=SHA2, jobs=[*first, *rerun_failed], configmaps=[record])
    assert opened(obs) == []


def test_an_unreadable_record_counts_as_none_and_the_record_keeps_the_newest_templates() -> None:
    env = observed([]).environment
    garbage = openings.configmap(env, ())
    garbage["data"] = {openings.DATA_KEY: "{not json"}
    assert openings.read_openings([garbage], env, NS) == ()
    many: tuple[openings.Opening, ...] = ()
    for index in range(openings.MAX_ENTRIES + 3):
        many = openings.with_opening(many, f"h{index}", [SHA1])
    assert len(many) == openings.MAX_ENTRIES and many[-1].template == f"h{index}"
    assert openings.with_opening(many, "h5", [SHA2])[-1] == openings.Opening("h5", (SHA2,))


def in_mode(
    pods: list[dict[str, Any]],
    project: dict[str, Any],
    plan: JobPlan = PLAN,
    phase: str = "Provisioning",
    annotations: dict[str, str] | None = None,
    **env: Any,
) -> Observed:
    status = {"phase": phase, "conditions": [ready_condition()]}
    obj = environment("pr-1", NS, {"web": SHA1}, uid="uid-1", status=status, **env)
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return observe(
        obj,
        plan=plan,
        project=project,
        deployment=catalyst.deployment(namespace=NS, ready=True),
        gated_pods=pods,
    )


COMPOSE_PROJECT = {"spec": {"templates": {"development": {"type": "docker-compose"}}}}


def test_in_a_mode_devjobs_does_not_follow_no_job_runs_no_pod_is_held_and_conditions_say_why() -> (
    None
):
    for obs, mode, operator_mode in [
        (in_mode([pod()], COMPOSE_PROJECT), "docker-compose", "docker-compose"),
        (in_mode([pod()], {"spec": {}}, type_="preview"), "workspace", "workspace"),
        (in_mode([pod()], {"spec": {}}, deployment_mode="no-such"), "no-such", "workspace"),
    ]:
        assert obs.mode == mode
        actions = reconcile(obs)
        assert not [a for a in actions if isinstance(a, (CreateJob, ApplyWorkload))]
        assert [a for a in actions if isinstance(a, OpenGate)] == [
            OpenGate("web-abc", "uid-web-abc", 0)
        ]
        (write,) = [a for a in actions if isinstance(a, WriteConditions)]
        conds = {c["type"]: c for c in write.conditions}
        for key in ("Job.web.migrate", "Job.web.smoke"):
            assert conds[key]["status"] == "False" and conds[key]["reason"] == "UnsupportedMode"
            assert (
                "devjobs runs lifecycle jobs only in Catalyst's production, development and "
                f"helm modes; this Environment is in {operator_mode} mode: the operator "
            ) in conds[key]["message"], conds[key]["message"]
        assert conds["JobsSucceeded"]["status"] == "False"


def test_an_init_container_job_is_not_applied_to_the_workload_in_such_a_mode() -> None:
    plan = job_plan(
        {"web": REPOSITORY}, job("migrate", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER)
    )
    obs = in_mode([], COMPOSE_PROJECT, plan=plan, phase="Ready")
    assert obs.mode == "docker-compose"
    assert not [a for a in reconcile(obs) if isinstance(a, (ApplyWorkload, CreateJob))]


def test_a_manual_run_is_still_created_in_such_a_mode() -> None:
    obs = in_mode([], COMPOSE_PROJECT, annotations={ANNOTATION_RUN: "web/migrate"})
    (created,) = [a for a in reconcile(obs) if isinstance(a, CreateJob)]
    assert created.manifest["metadata"]["labels"][LABEL_TRIGGER] == Trigger.MANUAL.value
