"""The workload's init-container patch (pure; applied to a real Deployment in
tests/test_cluster_run_workload.py)."""

from __future__ import annotations

from typing import Any

from devjobs.kube.podspec import RenderOptions
from devjobs.kube.render import render
from devjobs.resolver.models import JobPlan, RunAs, Trigger
from tests.render_fixtures import environment, job, plan, standard_plan


def _patch(p: JobPlan | None = None, **kwargs: object) -> dict[str, Any]:
    options = RenderOptions(trigger=Trigger.PRE_DEPLOY, **kwargs)  # type: ignore[arg-type]
    patch = render(p or standard_plan(), environment(), options).workload_patch
    assert patch is not None
    return patch


def test_patch_is_a_server_side_apply_configuration_of_the_deployment() -> None:
    patch = _patch(workload="app")
    assert patch["apiVersion"] == "apps/v1" and patch["kind"] == "Deployment"
    assert patch["metadata"] == {"name": "app", "namespace": "env-pr-12"}
    assert set(patch["spec"]) == {"template"}
    assert set(patch["spec"]["template"]["spec"]) == {"initContainers", "volumes"}


def test_init_containers_clone_then_setup_then_the_jobs_all_prefixed_devjobs() -> None:
    init = _patch()["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == [
        "devjobs-clone-web",
        "devjobs-web-post-create",
        "devjobs-web-migrate",
    ]
    for c in init:
        assert set(c["resources"]["limits"]) == {"cpu", "memory"}


def test_setup_steps_shared_by_jobs_run_once() -> None:
    p = plan(
        job("post-create", Trigger.POST_BUILD),
        job("a", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER, setup=["post-create"]),
        job("b", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER, setup=["post-create"]),
        repository=None,
    )
    names = [c["name"] for c in _patch(p)["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["devjobs-web-post-create", "devjobs-web-a", "devjobs-web-b"]


def test_a_setup_step_that_is_itself_an_init_container_job_runs_once() -> None:
    # The resolver makes on-create/post-create PreDeploy InitContainer jobs themselves.
    p = plan(
        job("post-create", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER),
        job("migrate", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER, setup=["post-create"]),
        repository=None,
    )
    names = [c["name"] for c in _patch(p)["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["devjobs-web-post-create", "devjobs-web-migrate"]


def test_no_init_container_jobs_renders_an_empty_list_so_stale_ones_are_removed() -> None:
    patch = _patch(plan(job("t", Trigger.PRE_DEPLOY), repository=None))
    assert patch["spec"]["template"]["spec"] == {"initContainers": []}


def test_every_init_container_job_source_gets_a_workspace_volume() -> None:
    p = plan(job("m", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER), repository=None)
    spec = _patch(p)["spec"]["template"]["spec"]
    assert spec["volumes"] == [{"name": "devjobs-workspace-web", "emptyDir": {}}]
    assert spec["initContainers"][0]["volumeMounts"] == [
        {"name": "devjobs-workspace-web", "mountPath": "/workspaces/web"}
    ]


def test_patch_only_at_pre_deploy() -> None:
    rendered = render(standard_plan(), environment(), RenderOptions(trigger=Trigger.POST_DEPLOY))
    assert rendered.workload_patch is None


def test_patch_is_deterministic() -> None:
    assert _patch() == _patch()
