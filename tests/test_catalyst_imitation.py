"""`tests/catalyst.py` plays Catalyst's operator in most controller tests; it stays only
where it agrees with the real one. One scenario under both, compared (tier 2).

The imitation differs from the real operator in ways these tests do not depend on, and
this test does not compare: it keeps an Environment's objects in the Environment's own
namespace (it carries no `catalyst.dev/team|project|environment` labels, so devjobs does
too), and it builds in a `manifest` template, which the real operator does only in helm
mode. What devjobs makes of either must be the same: the same Jobs at the same points, and
the same conditions.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from devjobs import catalyst
from devjobs.kube.client import Kube
from devjobs.resolver.models import Trigger
from tests.catalyst import Catalyst as Imitation
from tests.catalyst import job_config, job_plan
from tests.test_catalyst_operator import (  # noqa: F401 (fixtures)
    READY_TIMEOUT,
    AppServer,
    Cluster,
    app_server,
    cluster,
    place_production,
    wait_until,
)
from tests.test_devjobs_under_catalyst import conditions, devjobs_controller, wait_condition

pytestmark = pytest.mark.tier2


def outcome(found: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """devjobs' conditions, by type: status and reason (messages name commits and pods)."""
    return {t: (c["status"], c["reason"]) for t, c in found.items() if t != "Ready"}


def made(kube: Kube, namespace: str) -> set[tuple[str, str]]:
    jobs = kube.list(
        f"/apis/batch/v1/namespaces/{namespace}/jobs", "app.kubernetes.io/managed-by=devjobs"
    )["items"]
    return {
        (j["metadata"]["labels"]["devjobs.dev/job"], j["metadata"]["labels"]["devjobs.dev/trigger"])
        for j in jobs
    }


def test_the_imitation_and_the_real_operator_give_devjobs_the_same_outcome(
    kube_api: Any,
    kube_client: Any,
    kube_node: Any,
    catalyst_crds: list[str],
    cluster: Cluster,  # noqa: F811
    app_server: AppServer,  # noqa: F811
    namespace: str,
) -> None:
    image = kube_node.test_image
    plan = job_plan(
        {"app": "git://shop/app"},
        job_config("check", Trigger.POST_BUILD, "app", "echo checked", image, "/workspaces/app"),
        job_config("migrate", Trigger.PRE_DEPLOY, "app", "echo ok", image, "/workspaces/app"),
        job_config("smoke", Trigger.POST_DEPLOY, "app", "echo smoke", image, "/workspaces/app"),
    )
    kube = Kube(kube_client)

    def done(found: dict[str, dict[str, Any]]) -> bool:
        return found.get("JobsSucceeded", {}).get("status") == "True"

    # The real operator, production mode.
    placed = place_production(cluster, app_server, namespace)
    with devjobs_controller(kube_api, namespace, plan):
        wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
    real = outcome(conditions(cluster, namespace, placed.name))
    real_jobs = made(kube, placed.target)

    # The imitation, in a namespace of its own.
    other = f"t-imitation-{secrets.token_hex(2)}"
    cluster.core.create_namespace({"metadata": {"name": other}})
    try:
        imitation = Imitation(kube_client, other, image)
        repo, url, sha = app_server.repo()
        with devjobs_controller(kube_api, other, plan):
            imitation.create(url, sha)
            imitation.built(sha)
            imitation.deploy_web()
            imitation.set_phase(catalyst.PHASE_READY)
            wait_until(
                "every job under the imitation",
                lambda: done(imitation.conditions()),
                READY_TIMEOUT,
            )
        imitated = outcome(imitation.conditions())
        imitated_jobs = made(kube, other)
    finally:
        cluster.core.delete_namespace(other)

    assert imitated == real
    assert imitated_jobs == real_jobs == {
        ("check", "PostBuild"), ("migrate", "PreDeploy"), ("smoke", "PostDeploy"),
    }  # fmt: skip
