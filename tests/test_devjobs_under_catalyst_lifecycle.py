"""devjobs' lifecycle points under the real Catalyst operator (tier 2): helm mode's real
build Job and its early `Ready`, a new commit, and a settled minute.

As in `tests/test_devjobs_under_catalyst.py`: **the operator is real**, the image builder
a stand-in (`tests/test_catalyst_operator.py` says how), devjobs' controller runs in this
process and is given its plan directly.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devjobs import catalyst
from devjobs.kube.client import Kube
from devjobs.resolver.models import Trigger
from tests.catalyst import job_config, job_plan
from tests.cluster.catalyst_operator import CatalystOperator
from tests.test_catalyst_operator import (  # noqa: F401 (fixtures)
    READY_TIMEOUT,
    AppServer,
    Cluster,
    app_server,
    cluster,
    place_helm,
    release_revisions,
    release_settled,
    wait_until,
)
from tests.test_devjobs_under_catalyst import (
    MODES,
    Stage,
    conditions,
    devjobs_controller,
    stage,  # noqa: F401 (fixture)
    wait_condition,
)

pytestmark = pytest.mark.tier2


def plan(image: str, url: str, **scripts: tuple[Trigger, str]) -> Any:
    return job_plan(
        {"app": url},
        *(
            job_config(name, trigger, "app", script, image, "/workspaces/app")
            for name, (trigger, script) in scripts.items()
        ),
    )


def devjobs_jobs(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.list(
        f"/apis/batch/v1/namespaces/{namespace}/jobs", "app.kubernetes.io/managed-by=devjobs"
    )["items"]
    return items


def test_helm_postbuild_follows_the_real_build_and_postdeploy_waits_for_ready_pods(
    kube_api: Any,
    kube_client: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    app_server: AppServer,  # noqa: F811
    catalyst_operator: CatalystOperator,
    namespace: str,
) -> None:
    """Helm mode says Ready once the release is deployed, before its pods are (here they
    never are: the readiness probe fails); PostDeploy must wait for the pods."""
    placed = place_helm(
        cluster, app_server, catalyst_operator, namespace, values={"readinessPath": "/never"}
    )
    the_plan = plan(
        kube_node.test_image, f"git://{namespace}/app",
        check=(Trigger.POST_BUILD, "echo checked"), smoke=(Trigger.POST_DEPLOY, "echo smoke"),
    )  # fmt: skip
    kube = Kube(kube_client)
    with devjobs_controller(kube_api, namespace, the_plan):
        cluster.wait_phase(placed, catalyst.PHASE_READY)
        wait_condition(cluster, namespace, placed.name, "Job.app.check")
        build = cluster.batch.read_namespaced_job(
            catalyst.build_job_name("web", placed.commit), placed.target
        )
        (check,) = [
            j for j in devjobs_jobs(kube, placed.target) if j["metadata"]["labels"]
            ["devjobs.dev/job"] == "check"
        ]  # fmt: skip
        # PostBuild fired on the real build Job's success, not on the phase.
        assert build.status.completion_time is not None
        created = check["metadata"]["creationTimestamp"]
        assert created >= build.status.completion_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(8)  # Ready (the phase) for a while; the chart's pod never is
        assert cluster.phase(placed) == catalyst.PHASE_READY
        names = [
            j["metadata"]["labels"]["devjobs.dev/job"] for j in devjobs_jobs(kube, placed.target)
        ]
        assert "smoke" not in names
        smoke = conditions(cluster, namespace, placed.name)["Job.app.smoke"]
        assert (smoke["status"], smoke["reason"]) == ("Unknown", "Waiting"), smoke


@pytest.mark.parametrize("mode", MODES)
def test_a_new_commit_cancels_the_old_commits_unfinished_jobs_and_runs_the_new_ones(
    kube_api: Any,
    kube_client: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    stage: Stage,  # noqa: F811
    namespace: str,
    mode: str,
) -> None:
    """The operator rebuilds (helm) and redeploys, or (production, development) leaves
    the workload as it is; either way the old commit's running Job is cancelled and the
    new commit's runs."""
    placed = stage.place(mode, namespace)
    the_plan = plan(kube_node.test_image, f"git://{namespace}/app",
                    slow=(Trigger.POST_BUILD, "echo started; sleep 300"))  # fmt: skip
    kube = Kube(kube_client)
    with devjobs_controller(kube_api, namespace, the_plan):
        wait_until(
            "the first commit's slow job",
            lambda: any(
                j["metadata"]["annotations"]["devjobs.dev/commit"] == placed.commit
                for j in devjobs_jobs(kube, placed.target)
            ),
            READY_TIMEOUT,
        )
        second = stage.new_commit(placed, "second commit")

        def moved_on() -> bool:
            jobs = devjobs_jobs(kube, placed.target)
            commits = {
                j["metadata"]["annotations"]["devjobs.dev/commit"]
                for j in jobs
                if not j["metadata"].get("deletionTimestamp")
            }
            return commits == {second}

        wait_until("the old commit's Job cancelled and the new one's created", moved_on, 90)
        events = kube.list(f"/api/v1/namespaces/{namespace}/events")["items"]
        assert any(
            e["reason"] == "Cancelled" and placed.commit[:7] in e["message"] for e in events
        ), [e["message"] for e in events]
        slow = conditions(cluster, namespace, placed.name)["Job.app.slow"]
        assert slow["message"].startswith(f"commit {second[:7]}:"), slow


@pytest.mark.parametrize("mode", MODES)
def test_a_settled_environment_sees_no_write_loop_on_either_side(
    kube_api: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    stage: Stage,  # noqa: F811
    namespace: str,
    mode: str,
) -> None:
    """Catalyst's writes (the whole status) and devjobs' (conditions) coexist: once
    settled, a minute passes with no write to the Environment by either, no new
    revision of the workload (no rollout loop) and no devjobs write."""
    placed = stage.place(mode, namespace)
    the_plan = plan(
        kube_node.test_image, f"git://{namespace}/app",
        check=(Trigger.POST_BUILD, "echo checked"), smoke=(Trigger.POST_DEPLOY, "echo smoke"),
    )  # fmt: skip
    with devjobs_controller(kube_api, namespace, the_plan) as controller:
        cluster.wait_phase(placed, catalyst.PHASE_READY)
        wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
        time.sleep(5)  # the last log record and condition writes land
        # Helm mode: the upgrade the last Environment write started has finished.
        wait_until("the release to settle", lambda: release_settled(cluster, placed), 60)
        env = cluster.environment(placed) or {}
        workload = catalyst.workload(mode).deployment
        deployment = cluster.deployment(placed.target, workload)
        releases = release_revisions(cluster, placed)
        writes = dict(controller.stats.counters.writes)
        time.sleep(60)
        after = cluster.environment(placed) or {}
        assert after["metadata"]["resourceVersion"] == env["metadata"]["resourceVersion"]
        again = cluster.deployment(placed.target, workload)
        assert again.metadata.generation == deployment.metadata.generation
        assert again.metadata.resource_version == deployment.metadata.resource_version
        # Helm mode: each write to the Environment upgrades the release; none did.
        assert release_revisions(cluster, placed) == releases
        assert dict(controller.stats.counters.writes) == writes
