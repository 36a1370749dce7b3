"""Rendering a plan into Kubernetes objects (pure; the server-side checks are in
tests/test_render_server.py)."""

from __future__ import annotations

from typing import Any

import pytest

from devjobs.errors import DevjobsError
from devjobs.kube.podspec import RenderOptions
from devjobs.kube.render import render
from devjobs.kube.workspace import GitCredentials
from devjobs.resolver import environment as envmod
from devjobs.resolver.models import Trigger
from tests.render_fixtures import SHA, environment, environment_dict, job, plan, standard_plan


def _jobs(trigger: Trigger = Trigger.POST_DEPLOY, **kwargs: object) -> dict[str, dict[str, Any]]:
    rendered = render(standard_plan(), environment(), RenderOptions(trigger=trigger, **kwargs))  # type: ignore[arg-type]
    return {r.config.name: r.manifest for r in rendered.jobs}


def test_a_trigger_renders_its_job_run_jobs_only() -> None:
    assert sorted(_jobs()) == ["lint", "test"]
    assert sorted(_jobs(Trigger.PRE_DEPLOY)) == ["smoke"]
    # post-create is a setup step of other jobs, not a job of its own.
    assert _jobs(Trigger.POST_BUILD) == {}


def test_job_metadata_carries_labels_annotations_and_owner() -> None:
    manifest = _jobs()["test"]
    meta = manifest["metadata"]
    assert meta["namespace"] == "env-pr-12"
    assert meta["name"].startswith("pr-12-web-test-") and len(meta["name"]) <= 63
    labels = meta["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "devjobs"
    assert labels["catalyst.dev/job-type"] == "ci"
    assert labels["devjobs.dev/environment"] == "pr-12"
    assert labels["devjobs.dev/source"] == "web"
    assert labels["devjobs.dev/job"] == "test"
    assert labels["devjobs.dev/trigger"] == "PostDeploy"
    assert meta["annotations"]["devjobs.dev/commit"] == SHA
    assert meta["ownerReferences"][0]["kind"] == "Environment"
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    # The Environment is the managing owner, and a foreground deletion of it waits for
    # its Jobs (RBAC: update on environments/finalizers, deploy/rbac.yaml).
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "catalyst.catalyst.dev/v1alpha1",
            "kind": "Environment",
            "name": "pr-12",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_job_spec_fails_fast_and_ignores_disruptions() -> None:
    spec = _jobs()["test"]["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 600
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1] == {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0]}}
    assert spec["ttlSecondsAfterFinished"] > 0


def test_retries_become_backoff_limit_and_count_exit_codes() -> None:
    spec = _jobs(Trigger.PRE_DEPLOY)["smoke"]["spec"]
    assert spec["backoffLimit"] == 2
    assert spec["podFailurePolicy"]["rules"][1]["action"] == "Count"


def test_workspace_is_cloned_at_the_environment_commit_then_setup_then_job() -> None:
    pod = _jobs()["test"]["spec"]["template"]["spec"]
    init = pod["initContainers"]
    assert [c["name"] for c in init] == ["devjobs-clone", "devjobs-setup-post-create"]
    clone_env = {e["name"]: e.get("value") for e in init[0]["env"]}
    assert clone_env["DEVJOBS_REVISION"] == SHA
    assert clone_env["DEVJOBS_REPOSITORY"] == "https://git.example/shop/web.git"
    assert init[1]["command"] == ["sh", "-c", "echo setup"]
    assert [c["name"] for c in pod["containers"]] == ["test"]
    for c in init + pod["containers"]:
        assert {"name": "devjobs-workspace", "mountPath": "/workspaces/web"} in c["volumeMounts"]
    assert pod["volumes"] == [{"name": "devjobs-workspace", "emptyDir": {}}]


def test_every_container_has_cpu_and_memory_requests_and_limits() -> None:
    for manifest in _jobs().values():
        pod = manifest["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}
            assert c["imagePullPolicy"] == "IfNotPresent"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_parallel_job_is_one_container_per_entry() -> None:
    pod = _jobs()["lint"]["spec"]["template"]["spec"]
    assert [(c["name"], c["command"]) for c in pod["containers"]] == [
        ("ruff", ["ruff", "check"]),
        ("mypy", ["mypy", "."]),
    ]


def test_null_image_is_the_catalyst_build_image_or_the_override() -> None:
    container = _jobs()["test"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.default.svc.cluster.local:5000/shop/web-pr-12:{SHA}"
    overridden = _jobs(images={"*": "busybox:1"})["test"]
    assert overridden["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
    built = _jobs(builds={"web": "app"})["test"]["spec"]["template"]["spec"]["containers"][0]
    assert built["image"].endswith(f"/shop/app-pr-12:{SHA}")


def test_rendering_is_deterministic() -> None:
    assert _jobs() == _jobs()


def test_a_change_in_what_runs_gives_a_new_job_name() -> None:
    base = render(plan(job("t")), environment(), RenderOptions(trigger=Trigger.POST_DEPLOY))
    variants = [
        render(
            plan(job("t", command=["true"])),
            environment(),
            RenderOptions(trigger=Trigger.POST_DEPLOY),
        ),
        render(
            plan(job("t", env={"A": "1"})),
            environment(),
            RenderOptions(trigger=Trigger.POST_DEPLOY),
        ),
        render(
            plan(job("t")), environment(sha="f" * 40), RenderOptions(trigger=Trigger.POST_DEPLOY)
        ),
        render(
            plan(job("t", image="busybox:1")),
            environment(),
            RenderOptions(trigger=Trigger.POST_DEPLOY),
        ),
        render(
            plan(job("t")),
            environment(),
            RenderOptions(trigger=Trigger.POST_DEPLOY, attempts={"web/t": 1}),
        ),
    ]
    names = {base.jobs[0].name} | {v.jobs[0].name for v in variants}
    assert len(names) == 1 + len(variants)


def test_ttl_change_keeps_the_job_name() -> None:
    a = render(plan(job("t")), environment(), RenderOptions(trigger=Trigger.POST_DEPLOY))
    b = render(
        plan(job("t")), environment(), RenderOptions(trigger=Trigger.POST_DEPLOY, ttl_seconds=60)
    )
    assert a.jobs[0].name == b.jobs[0].name


def test_named_jobs_run_under_the_manual_trigger() -> None:
    rendered = render(standard_plan(), environment(), RenderOptions(jobs=("seed", "web/test")))
    assert [(r.config.name, r.trigger) for r in rendered.jobs] == [
        ("seed", Trigger.MANUAL),
        ("test", Trigger.MANUAL),
    ]
    labels = rendered.jobs[0].manifest["metadata"]["labels"]
    assert labels["devjobs.dev/trigger"] == "Manual"


def test_an_unknown_job_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(DevjobsError) as error:
        render(standard_plan(), environment(), RenderOptions(jobs=("nope",)))
    assert error.value.place == "nope"
    assert "web/test" in error.value.message


def test_a_missing_setup_step_is_an_error() -> None:
    with pytest.raises(DevjobsError, match="setup job 'gone' is not a job of source 'web'"):
        render(
            plan(job("t", setup=["gone"])),
            environment(),
            RenderOptions(trigger=Trigger.POST_DEPLOY),
        )


def test_local_sources_get_no_clone_but_still_a_shared_workspace() -> None:
    rendered = render(
        standard_plan(repository=None), environment(), RenderOptions(trigger=Trigger.POST_DEPLOY)
    )
    pod = {r.config.name: r.manifest for r in rendered.jobs}["test"]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["devjobs-setup-post-create"]
    assert pod["volumes"] == [{"name": "devjobs-workspace", "emptyDir": {}}]
    mount = {"name": "devjobs-workspace", "mountPath": "/workspaces/web"}
    assert pod["initContainers"][0]["volumeMounts"] == [mount]
    assert pod["containers"][0]["volumeMounts"] == [mount]


def test_secret_credentials_come_from_the_secret_not_the_caller() -> None:
    options = RenderOptions(
        trigger=Trigger.POST_DEPLOY, git_credentials=GitCredentials(secret="git-token")
    )
    clone = (
        render(standard_plan(), environment(), options)
        .jobs[0]
        .manifest["spec"]["template"]["spec"]["initContainers"][0]
    )
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in clone["env"] if "valueFrom" in e}
    assert refs["GIT_PASSWORD"] == {"name": "git-token", "key": "password", "optional": False}


def test_catalyst_credentials_mount_the_git_scripts_config_map() -> None:
    options = RenderOptions(
        trigger=Trigger.POST_DEPLOY, git_credentials=GitCredentials(catalyst_installation_id="42")
    )
    manifest = render(standard_plan(), environment(), options).jobs[0].manifest
    pod = manifest["spec"]["template"]["spec"]
    assert {
        "name": "devjobs-git-scripts",
        "configMap": {"name": "catalyst-git-scripts", "defaultMode": 0o755},
    } in pod["volumes"]
    env = {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}
    assert env["INSTALLATION_ID"] == "42"
    assert manifest["metadata"]["labels"]["catalyst.dev/installation-id"] == "42"


def test_environment_file_without_uid_renders_no_owner_reference() -> None:
    rendered = render(
        plan(job("t")), environment(uid=""), RenderOptions(trigger=Trigger.POST_DEPLOY)
    )
    assert "ownerReferences" not in rendered.jobs[0].manifest["metadata"]


def test_render_output_is_byte_stable_and_has_no_yaml_anchors() -> None:
    from devjobs.cli.render import format_objects

    def once(output: str) -> str:
        rendered = render(standard_plan(), environment(), RenderOptions(trigger=Trigger.PRE_DEPLOY))
        return format_objects(rendered.manifests(), output)

    assert once("yaml") == once("yaml") and once("json") == once("json")
    assert "&id" not in once("yaml") and "*id" not in once("yaml")
    import json

    import yaml

    assert list(yaml.safe_load_all(once("yaml"))) == json.loads(once("json"))["items"]


def test_a_labelled_environments_jobs_go_to_catalysts_target_namespace_without_an_owner() -> None:
    """Catalyst's operator keeps builds and the workload in the target namespace
    `<team>-<project>-<environment>`; devjobs' Jobs and the workload patch go there too,
    and (owner references cannot cross namespaces) name the Environment's namespace."""
    obj = environment_dict(namespace="team-a")
    obj["metadata"]["labels"] = {
        "catalyst.dev/team": "team-a",
        "catalyst.dev/project": "shop",
        "catalyst.dev/environment": "pr-12",
    }
    env = envmod.from_object(obj)
    assert env.jobs_namespace == "team-a-shop-pr-12"
    rendered = render(standard_plan(), env, RenderOptions(trigger=Trigger.PRE_DEPLOY))
    (smoke,) = rendered.jobs
    meta = smoke.manifest["metadata"]
    assert meta["namespace"] == "team-a-shop-pr-12"
    assert "ownerReferences" not in meta
    assert meta["annotations"]["devjobs.dev/environment-namespace"] == "team-a"
    assert meta["labels"]["devjobs.dev/environment"] == "pr-12"
    assert rendered.workload_patch is not None
    assert rendered.workload_patch["metadata"]["namespace"] == "team-a-shop-pr-12"


def test_an_unlabelled_environment_keeps_its_jobs_in_its_own_namespace_with_an_owner() -> None:
    env = environment()
    (job_,) = render(standard_plan(), env, RenderOptions(trigger=Trigger.PRE_DEPLOY)).jobs
    meta = job_.manifest["metadata"]
    assert meta["namespace"] == env.namespace
    assert meta["ownerReferences"][0]["uid"] == env.uid
    assert "devjobs.dev/environment-namespace" not in meta["annotations"]
