"""The workload init-container patch applied to a real Deployment: idempotent, removes
only what devjobs added, holds the workload back until the init containers succeed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devjobs.kube.client import Kube
from devjobs.kube.podspec import RenderOptions
from devjobs.kube.render import render
from devjobs.resolver import environment as envmod
from devjobs.resolver.models import RunAs, Trigger
from tests import catalyst
from tests.render_fixtures import environment_dict, job, plan

IMAGE = "devjobs.test/busybox:1"


def deployment(namespace: str, image: str = IMAGE) -> dict[str, Any]:
    """Catalyst's workload, with an init container of Catalyst's own."""
    others = catalyst.container("others-init", image, ["sh", "-c", "echo not devjobs"])
    return catalyst.deployment(namespace=namespace, image=image, inits=[others])


def patch_for(namespace: str, *jobs: Any, image: str = IMAGE) -> dict[str, Any]:
    env = envmod.from_object(environment_dict(namespace=namespace))
    options = RenderOptions(trigger=Trigger.PRE_DEPLOY, images={"*": image}, workspace="empty")
    rendered = render(plan(*jobs, repository=None), env, options)
    assert rendered.workload_patch is not None
    return rendered.workload_patch


def read(kube: Kube, namespace: str) -> dict[str, Any]:
    obj = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
    assert obj is not None
    return obj


def init_names(obj: dict[str, Any]) -> list[str]:
    return [c["name"] for c in obj["spec"]["template"]["spec"].get("initContainers") or []]


MIGRATE = job(
    "migrate",
    Trigger.PRE_DEPLOY,
    run_as=RunAs.INIT_CONTAINER,
    command=["sh", "-c", "echo migrated"],
)
SEED = job(
    "seed", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER, command=["sh", "-c", "echo seeded"]
)


def test_applying_the_patch_twice_changes_nothing(kube_client: Any, namespace: str) -> None:
    kube = Kube(kube_client)
    kube.apply(deployment(namespace), field_manager="catalyst")
    kube.apply(patch_for(namespace, MIGRATE))
    first = read(kube, namespace)
    assert init_names(first) == ["others-init", "devjobs-web-migrate"]
    kube.apply(patch_for(namespace, MIGRATE))
    second = read(kube, namespace)
    assert second["metadata"]["generation"] == first["metadata"]["generation"]
    assert second["spec"] == first["spec"]
    # (resourceVersion may move: the Deployment controller writes status meanwhile.)
    mine = [m for m in second["metadata"]["managedFields"] if m["manager"] == "devjobs"]
    before = [m for m in first["metadata"]["managedFields"] if m["manager"] == "devjobs"]
    assert mine == before  # the second apply was a no-op for devjobs' fields too


def test_stale_devjobs_init_containers_are_removed_and_others_kept(
    kube_client: Any, namespace: str
) -> None:
    kube = Kube(kube_client)
    kube.apply(deployment(namespace), field_manager="catalyst")
    kube.apply(patch_for(namespace, MIGRATE, SEED))
    assert init_names(read(kube, namespace)) == [
        "others-init",
        "devjobs-web-migrate",
        "devjobs-web-seed",
    ]
    kube.apply(patch_for(namespace, SEED))
    after = read(kube, namespace)
    assert init_names(after) == ["others-init", "devjobs-web-seed"]
    kube.apply(patch_for(namespace, job("t", Trigger.PRE_DEPLOY)))  # no InitContainer jobs left
    after = read(kube, namespace)
    assert init_names(after) == ["others-init"]
    assert [c["name"] for c in after["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert "volumes" not in after["spec"]["template"]["spec"]


@pytest.mark.tier2
def test_the_workload_runs_devjobs_init_containers_and_waits_for_them(
    kube_client: Any, namespace: str
) -> None:
    kube = Kube(kube_client)
    kube.apply(deployment(namespace), field_manager="catalyst")
    failing = job(
        "migrate", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER, command=["sh", "-c", "exit 4"]
    )
    kube.apply(patch_for(namespace, failing))
    pod = wait_for_pod(kube, namespace, lambda p: _init_exit(p, "devjobs-web-migrate") == 4)
    assert not _ready(pod)  # held back: the app container never started
    kube.apply(patch_for(namespace, MIGRATE))
    pod = wait_for_pod(
        kube, namespace, lambda p: _init_exit(p, "devjobs-web-migrate") == 0 and _ready(p)
    )
    assert _init_exit(pod, "others-init") == 0


def wait_for_pod(kube: Kube, namespace: str, ok: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod in kube.list(f"/api/v1/namespaces/{namespace}/pods", "app=web")["items"]:
            if ok(pod):
                return pod  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError("no pod reached the expected state")


def _init_exit(pod: dict[str, Any], name: str) -> int | None:
    for status in pod.get("status", {}).get("initContainerStatuses") or []:
        if status["name"] == name:
            for key in ("state", "lastState"):
                terminated = (status.get(key) or {}).get("terminated")
                if terminated:
                    return int(terminated["exitCode"])
    return None


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


@pytest.mark.tier2
def test_devjobs_run_at_predeploy_follows_the_rollout_and_reports_the_init_container_job(
    kube_api: Any, kube_client: Any, catalyst_crds: list[str], namespace: str, tmp_path: Any
) -> None:
    import io
    import json
    import sys

    from devjobs.cli import build_parser
    from devjobs.cli.run import run_on_cluster

    kube = Kube(kube_client)
    kube.apply(deployment(namespace), field_manager="catalyst")
    kube.request(
        "POST",
        f"/apis/catalyst.catalyst.dev/v1alpha1/namespaces/{namespace}/environments",
        body={
            "apiVersion": "catalyst.catalyst.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": "pr-5", "namespace": namespace},
            "spec": {
                "projectRef": {"name": "shop"},
                "type": "development",
                "sources": [{"name": "web", "branch": "main", "commitSha": "cd" * 20}],
            },
        },
    )
    source = tmp_path / "web"
    (source / ".devcontainer").mkdir(parents=True)
    config = source / ".devcontainer" / "devcontainer.json"

    def migrate(command: str) -> None:
        job = {"command": ["sh", "-c", command], "trigger": "PreDeploy", "runAs": "InitContainer"}
        body = {"image": IMAGE, "customizations": {"devjobs": {"jobs": {"migrate": job}}}}
        config.write_text(json.dumps(body))

    def devjobs_run() -> tuple[int, str]:
        out = io.StringIO()
        args = build_parser().parse_args(
            ["run", "--source", f"web={source}", "--environment", f"{namespace}/pr-5",
             "--workspace", "empty", "--trigger", "PreDeploy"]
        )  # fmt: skip
        return run_on_cluster(args, kube=kube, out=out), out.getvalue()

    def conditions() -> dict[str, dict[str, Any]]:
        env = kube.get(
            f"/apis/catalyst.catalyst.dev/v1alpha1/namespaces/{namespace}/environments/pr-5"
        )
        assert env is not None
        return {c["type"]: c for c in (env.get("status") or {}).get("conditions") or []}

    def devjobs_logs() -> str:
        from devjobs.cli import logs

        args = build_parser().parse_args(
            ["logs", "--kubeconfig", str(kubeconfig), "--environment", f"{namespace}/pr-5",
             "migrate"]
        )  # fmt: skip
        buffer = io.StringIO()
        old, sys.stdout = sys.stdout, buffer
        try:
            assert logs.run(args) == 0
        finally:
            sys.stdout = old
        return buffer.getvalue()

    kubeconfig = kube_api.kubeconfig
    migrate("echo migrating; exit 4")
    code, out = devjobs_run()
    assert code == 1, out
    assert "init container devjobs-web-migrate of pod web-" in out, out
    assert "exited with code 4: the workload is held back" in out
    failed = conditions()
    assert failed["Job.web.migrate"]["status"] == "False", failed
    assert failed["Job.web.migrate"]["reason"] == "Failed"
    message = failed["Job.web.migrate"]["message"]
    assert "init container devjobs-web-migrate of web pod web-" in message, message
    assert "exited with code 4" in message and "migrating" in message, message
    assert failed["JobsSucceeded"]["status"] == "False"
    assert "migrating" in devjobs_logs()

    migrate("echo migrated")
    code, out = devjobs_run()
    assert code == 0, out
    assert "deployment/web: 1 devjobs init containers succeeded" in out
    fixed = conditions()
    assert fixed["Job.web.migrate"]["status"] == "True", fixed
    assert fixed["JobsSucceeded"]["status"] == "True"
    # The pod that ran it is gone (the Deployment is scaled away): the kept tail remains.
    kube.request(
        "PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        body={"spec": {"replicas": 0}}, content_type="application/merge-patch+json",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while kube.list(f"/api/v1/namespaces/{namespace}/pods", "app=web")["items"]:
        assert time.monotonic() < deadline, "the workload's pods were not deleted"
        time.sleep(0.5)
    assert devjobs_logs() == "migrated\n"
