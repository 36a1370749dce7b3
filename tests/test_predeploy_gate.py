"""PreDeploy that blocks, under the real Catalyst operator (tier 2).

**The operator is real** (`catalyst_operator`: Catalyst's own `manager`, built from its
unmodified source); devjobs' controller runs in this process as users run it, and
`deploy/predeploy-gate.yaml` (the MutatingAdmissionPolicy, as shipped) is installed for the
test and removed after it. Production mode: the operator's Deployment `web` rolls out a
new image by RollingUpdate (maxSurge 1, maxUnavailable 0), so a new pod that never gets
Ready leaves the previous one serving.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devjobs import catalyst
from devjobs.kube.vocabulary import INIT_PREFIX, PREDEPLOY_GATE
from devjobs.resolver.models import JobPlan, RunAs, Trigger
from tests.catalyst import job_config, job_plan
from tests.cluster.catalyst_operator import CatalystOperator
from tests.test_catalyst_operator import (  # noqa: F401 (fixtures)
    READY_TIMEOUT,
    SOURCE,
    AppServer,
    Cluster,
    app_server,
    cluster,
    place_development,
    place_helm,
    production_templates,
    set_commit,
    wait_until,
)
from tests.test_controller_deploy import REPO, kubectl
from tests.test_devjobs_under_catalyst import (
    MODES,
    Stage,
    conditions,
    devjobs_controller,
    stage,  # noqa: F401 (fixture)
    wait_condition,
)

pytestmark = pytest.mark.tier2
POLICY = REPO / "deploy/predeploy-gate.yaml"


@pytest.fixture
def gate_policy(kube_api: Any, kube_client: Any) -> Iterator[None]:
    """deploy/predeploy-gate.yaml installed, and in effect (a probe pod is gated)."""
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_client)
    probe_ns = f"dj-gate-probe-{time.monotonic_ns() % 10**8}"
    labels = {catalyst.NAMESPACE_TYPE_LABEL: catalyst.NAMESPACE_TYPE_ENVIRONMENT}
    core.create_namespace({"metadata": {"name": probe_ns, "labels": labels}})
    kubectl(kube_api, "apply", "-f", str(POLICY))
    probe = Path(kube_api.kubeconfig).parent / "gate-probe.yaml"
    limits = {"cpu": "10m", "memory": "16Mi"}
    probe.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "probe", "labels": dict([catalyst.WORKLOAD_POD_LABEL])},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "busybox",
                            "resources": {"requests": limits, "limits": limits},
                        }
                    ]
                },
            }
        )
    )

    def in_effect() -> bool:
        done = kubectl(kube_api, "create", "-f", str(probe), "-n", probe_ns,
                       "--dry-run=server", "-o", "json", check=False)  # fmt: skip
        return done.returncode == 0 and PREDEPLOY_GATE in done.stdout

    try:
        wait_until("the PreDeploy gate policy to take effect", in_effect, 30)
        yield
    finally:
        for kind in ("mutatingadmissionpolicybinding", "mutatingadmissionpolicy"):
            kubectl(kube_api, "delete", kind, "devjobs-predeploy-gate", "--ignore-not-found")
        core.delete_namespace(probe_ns)


def plan_for_commit(
    image: str,
    url: str,
    failing: set[str] | frozenset[str] = frozenset(),
    *,
    job: str = "migrate",
    run_as: RunAs = RunAs.JOB,
) -> Any:
    """The resolver: a plan whose PreDeploy `job` (run as `run_as`) fails at the commits
    in `failing`, and a PostDeploy `smoke`."""

    def resolve(project: Any, env: Any, cache: Any) -> JobPlan:
        sha = env["spec"]["sources"][0]["commitSha"]
        script = f"echo {job} failed; exit 1" if sha in failing else f"echo {job} done"
        return job_plan(
            {"app": url},
            job_config(job, Trigger.PRE_DEPLOY, "app", script, image, "/workspaces/app",
                       run_as=run_as),
            job_config("smoke", Trigger.POST_DEPLOY, "app", "echo smoke ok", image,
                       "/workspaces/app"),
        )  # fmt: skip

    return resolve


def wait_held(api: Cluster, team: str, name: str) -> None:
    """Until the failed PreDeploy is reported with the workload pod(s) it holds."""

    def held() -> bool:
        smoke = conditions(api, team, name).get("Job.app.smoke", {})
        return smoke.get("reason") == "PreDeployFailed" and "held" in smoke.get("message", "")

    wait_until("the failed PreDeploy to hold the workload's pods", held, READY_TIMEOUT)


def web_pods(api: Cluster, namespace: str) -> list[Any]:
    pods = api.core.list_namespaced_pod(namespace, label_selector="app=web").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def gated(pod: Any) -> bool:
    return PREDEPLOY_GATE in [g.name for g in pod.spec.scheduling_gates or []]


def test_production_new_pods_serve_only_after_their_commits_pre_deploy_succeeded(
    kube_api: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    app_server: AppServer,  # noqa: F811
    catalyst_operator: CatalystOperator,
    gate_policy: None,
    namespace: str,
) -> None:
    repo, url, first = app_server.repo()
    repo.write("index.html", "second\n")
    second = repo.commit("second")  # its migrate fails
    repo.write("index.html", "third\n")
    third = repo.commit("third")
    cluster.create_project(namespace, "shop", url, production_templates())
    placed = cluster.create_environment(
        namespace, "shop", "pr-9", "deployment", first, catalyst.MODE_PRODUCTION
    )
    resolver = plan_for_commit(kube_node.test_image, url, failing={second})
    with devjobs_controller(kube_api, namespace, resolver=resolver):
        # 1. The first commit: the first pod is gated until migrate succeeded.
        cluster.wait_phase(placed, catalyst.PHASE_READY)
        found = conditions(cluster, namespace, placed.name)
        assert found["Job.app.migrate"]["status"] == "True", found
        migrate = cluster.batch.list_namespaced_job(
            placed.target, label_selector="devjobs.dev/job=migrate"
        ).items
        (done,) = [j for j in migrate if j.metadata.annotations["devjobs.dev/commit"] == first]
        (pod,) = web_pods(cluster, placed.target)
        scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
        assert pod.metadata.creation_timestamp < done.status.completion_time
        assert scheduled.last_transition_time >= done.status.completion_time
        wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
        old_pod = pod.metadata.name

        # 2. A new commit and image whose migrate fails: the operator replaces the
        # Deployment's spec, its new pod stays gated, the previous one keeps serving.
        new_image = catalyst_operator.import_web_image("devjobs.test/web:2")
        cluster.custom.patch_namespaced_custom_object(
            catalyst.GROUP, catalyst.VERSION, namespace, "environments", placed.name,
            {"spec": {"config": {"image": new_image},
                      "sources": [{"name": SOURCE, "commitSha": second, "branch": "main"}]}},
        )  # fmt: skip
        wait_held(cluster, namespace, placed.name)
        time.sleep(5)  # the gate holds: nothing changes
        pods = {p.metadata.name: p for p in web_pods(cluster, placed.target)}
        new = [p for p in pods.values() if p.spec.containers[0].image == new_image]
        assert len(new) == 1 and gated(new[0]) and new[0].status.phase == "Pending", pods
        assert not new[0].spec.node_name
        assert ready(pods[old_pod]) and not gated(pods[old_pod])
        found = conditions(cluster, namespace, placed.name)
        assert found["Job.app.migrate"]["status"] == "False"
        assert found["Job.app.migrate"]["message"].startswith(f"commit {second[:7]}")
        assert found["PreDeployJobsSucceeded"]["status"] == "False"
        assert f"held by the scheduling gate {PREDEPLOY_GATE}" in found["Job.app.smoke"]["message"]
        assert (cluster.environment(placed) or {})["status"]["phase"] == catalyst.PHASE_READY

        # A drained node meanwhile: the previous pod's replacement, gated at admission as
        # every new pod is, is of the template opened at the first commit: it starts and
        # serves (the previous version keeps serving); the new image's pod stays held.
        cluster.core.delete_namespaced_pod(old_pod, placed.target, grace_period_seconds=0)

        def replaced() -> bool:
            return any(
                p.metadata.name != old_pod and p.spec.containers[0].image != new_image
                and ready(p)
                for p in web_pods(cluster, placed.target)
            )  # fmt: skip

        wait_until("the previous pod's replacement to serve", replaced, 90)
        still = [
            p for p in web_pods(cluster, placed.target) if p.spec.containers[0].image == new_image
        ]
        assert [p.metadata.name for p in still] == [new[0].metadata.name] and gated(still[0])

        # 3. A fixed commit (same image: the Deployment does not change): its migrate
        # succeeds, the held pod starts and replaces the previous one.
        set_commit(cluster, placed, third)

        def rolled() -> bool:
            live = web_pods(cluster, placed.target)
            return bool(live) and all(
                p.spec.containers[0].image == new_image and ready(p) for p in live
            )

        wait_until("the held pod to serve after the fixed commit's migrate", rolled, 120)
        (served,) = web_pods(cluster, placed.target)
        assert served.metadata.name == new[0].metadata.name
        wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
        found = conditions(cluster, namespace, placed.name)
        assert found["Job.app.smoke"]["message"].startswith(f"commit {third[:7]}")


def test_helm_the_charts_pods_wait_for_their_commits_pre_deploy_and_a_fix_opens_them(
    kube_api: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    app_server: AppServer,  # noqa: F811
    catalyst_operator: CatalystOperator,
    gate_policy: None,
    namespace: str,
) -> None:
    """Helm mode: the operator builds, then installs the chart (Ready at once, pods or
    not); the chart's pod runs the commit's built image, so the gate knows its commit.
    A failing migrate keeps it from ever being scheduled; the next commit's build and
    upgrade bring a new pod, opened once that commit's migrate succeeded."""
    placed = place_helm(cluster, app_server, catalyst_operator, namespace)
    repo = app_server.repos[-1]
    repo.write("index.html", "fixed\n")
    fixed = repo.commit("fixed")
    catalyst_operator.import_web_image(catalyst.build_image("shop", "web", placed.name, fixed))
    repo.write("index.html", "broken again\n")
    broken = repo.commit("broken")
    catalyst_operator.import_web_image(catalyst.build_image("shop", "web", placed.name, broken))
    failing = {placed.commit, broken}
    resolver = plan_for_commit(kube_node.test_image, "git://shop/app", failing=failing)
    with devjobs_controller(kube_api, namespace, resolver=resolver):
        # 1. The first commit's migrate fails: the chart's pod is never scheduled.
        wait_held(cluster, namespace, placed.name)
        time.sleep(5)
        (pod,) = web_pods(cluster, placed.target)
        assert gated(pod) and not pod.spec.node_name and pod.status.phase == "Pending"
        assert pod.spec.containers[0].image.endswith(f":{placed.commit}")
        assert (cluster.environment(placed) or {})["status"]["phase"] == catalyst.PHASE_READY
        found = conditions(cluster, namespace, placed.name)
        assert found["PreDeployJobsSucceeded"]["status"] == "False"

        # 2. The fixed commit: built, upgraded, its migrate succeeds, its pod serves.
        set_commit(cluster, placed, fixed)

        def serving() -> bool:
            live = web_pods(cluster, placed.target)
            return any(p.spec.containers[0].image.endswith(f":{fixed}") and ready(p) for p in live)

        wait_until("the fixed commit's pod to serve", serving, READY_TIMEOUT)
        wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
        found = conditions(cluster, namespace, placed.name)
        assert found["Job.app.smoke"]["message"].startswith(f"commit {fixed[:7]}")

        # 3. A commit whose migrate fails again: built and upgraded, its pod stays gated
        # and the fixed commit's pod keeps serving.
        set_commit(cluster, placed, broken)
        wait_condition(cluster, namespace, placed.name, "PreDeployJobsSucceeded", "False")
        wait_held(cluster, namespace, placed.name)
        time.sleep(5)
        live = web_pods(cluster, placed.target)
        held = [p for p in live if p.spec.containers[0].image.endswith(f":{broken}")]
        assert len(held) == 1 and gated(held[0]) and not held[0].spec.node_name, live
        (still,) = [p for p in live if ready(p)]
        assert still.spec.containers[0].image.endswith(f":{fixed}")


def test_development_the_first_pod_waits_for_pre_deploy_and_a_fixed_commit_opens_it(
    kube_api: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    app_server: AppServer,  # noqa: F811
    catalyst_operator: CatalystOperator,
    gate_policy: None,
    namespace: str,
) -> None:
    """Development mode: the operator creates the Deployment once and never changes it
    on a new commit, so its one pod names no commit: it waits for the current commit's
    PreDeploy jobs. A failing migrate keeps the environment from ever serving (the phase
    stays Provisioning); a fixed commit's migrate opens the same pod."""
    placed = place_development(cluster, app_server, kube_node, namespace)
    repo = app_server.repos[-1]
    repo.write("index.html", "fixed\n")
    fixed = repo.commit("fixed")
    resolver = plan_for_commit(kube_node.test_image, "git://shop/app", failing={placed.commit})
    with devjobs_controller(kube_api, namespace, resolver=resolver):
        wait_held(cluster, namespace, placed.name)
        time.sleep(5)
        (pod,) = web_pods(cluster, placed.target)
        assert gated(pod) and not pod.spec.node_name
        assert cluster.phase(placed) != catalyst.PHASE_READY

        set_commit(cluster, placed, fixed)
        cluster.wait_phase(placed, catalyst.PHASE_READY)
        (served,) = web_pods(cluster, placed.target)
        assert served.metadata.name == pod.metadata.name and not gated(served)
        wait_condition(cluster, namespace, placed.name, "JobsSucceeded")


def runs_seed(pod: Any) -> bool:
    return any(c.name.startswith(INIT_PREFIX) for c in pod.spec.init_containers or [])


@pytest.mark.parametrize("mode", MODES)
def test_an_init_container_job_runs_in_the_workloads_pods_before_they_serve(
    kube_api: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    stage: Stage,  # noqa: F811
    gate_policy: None,
    namespace: str,
    mode: str,
) -> None:
    """`runAs: InitContainer`: devjobs adds the job to the workload's pod template (the
    operator's Deployment, or the chart's); the pods that serve are those that ran it,
    opened by the gate, and PostDeploy follows."""
    placed = stage.place(mode, namespace)
    resolver = plan_for_commit(
        kube_node.test_image, f"git://{namespace}/app", job="seed", run_as=RunAs.INIT_CONTAINER
    )
    with devjobs_controller(kube_api, namespace, resolver=resolver):
        found = wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
        assert found["Job.app.seed"]["status"] == "True", found
        assert found["Job.app.smoke"]["status"] == "True", found

        def served() -> bool:
            live = web_pods(cluster, placed.target)
            return bool(live) and all(runs_seed(p) and ready(p) for p in live)

        wait_until("only pods that ran the init container to serve", served, 60)
        assert not any(gated(p) for p in web_pods(cluster, placed.target))


def test_production_a_failing_init_container_job_after_the_operator_replaced_the_spec_keeps_the_previous_pod_serving(  # noqa: E501
    kube_api: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    app_server: AppServer,  # noqa: F811
    catalyst_operator: CatalystOperator,
    gate_policy: None,
    namespace: str,
) -> None:
    """A new image makes the operator replace the whole Deployment spec, devjobs' init
    container with it: that spec's pod stays gated while devjobs applies the init
    container again; the new commit's fails, so the new pod never serves and the previous
    one (which ran the first commit's) does."""
    repo, url, first = app_server.repo()
    repo.write("index.html", "second\n")
    second = repo.commit("second")
    cluster.create_project(namespace, "shop", url, production_templates())
    placed = cluster.create_environment(
        namespace, "shop", "pr-7", "deployment", first, catalyst.MODE_PRODUCTION
    )
    resolver = plan_for_commit(
        kube_node.test_image, url, {second}, job="seed", run_as=RunAs.INIT_CONTAINER
    )
    with devjobs_controller(kube_api, namespace, resolver=resolver):
        wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
        (old,) = web_pods(cluster, placed.target)
        assert runs_seed(old) and ready(old)

        new_image = catalyst_operator.import_web_image("devjobs.test/web:3")
        cluster.custom.patch_namespaced_custom_object(
            catalyst.GROUP, catalyst.VERSION, namespace, "environments", placed.name,
            {"spec": {"config": {"image": new_image},
                      "sources": [{"name": SOURCE, "commitSha": second, "branch": "main"}]}},
        )  # fmt: skip
        wait_condition(cluster, namespace, placed.name, "Job.app.seed", "False")
        time.sleep(5)
        pods = web_pods(cluster, placed.target)
        new = [p for p in pods if p.spec.containers[0].image == new_image]
        assert new and not any(ready(p) for p in new), pods
        # Only pods of the re-applied spec (with the init container) ever left the gate.
        assert all(runs_seed(p) for p in new if not gated(p)), new
        (serving,) = [p for p in pods if ready(p)]
        assert serving.metadata.name == old.metadata.name
        found = conditions(cluster, namespace, placed.name)
        assert found["Job.app.seed"]["message"].startswith(f"commit {second[:7]}"), found
        assert found["JobsSucceeded"]["status"] == "False"
