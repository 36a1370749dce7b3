"""deploy/: `kubectl apply -k deploy/` installs, and the controller's identity may do its
job and nothing more (asked of the real API server's RBAC authorizer)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import binaries

REPO = Path(__file__).resolve().parents[1]
SA = "system:serviceaccount:devjobs-system:devjobs-controller"


def kubectl(kube_api: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl` of the test cluster; with `check`, a failure raises with its stderr."""
    exe = str(binaries.find().get("kubectl") or shutil.which("kubectl") or "kubectl")
    done = subprocess.run(
        [exe, "--kubeconfig", str(kube_api.kubeconfig), *args], capture_output=True, text=True
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
    return done


def test_deploy_ships_the_generated_jobs_aware_project_crd() -> None:
    shipped = (REPO / "deploy/crds/projects.catalyst.catalyst.dev.yaml").read_text()
    assert shipped == (REPO / "schemas/crds/projects.catalyst.catalyst.dev.yaml").read_text()


def test_every_container_states_requests_and_limits_and_runs_as_non_root() -> None:
    deployment = yaml.safe_load((REPO / "deploy/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


ALLOWED = [
    ("list", "environments.catalyst.catalyst.dev", "team-a"),
    ("watch", "environments.catalyst.catalyst.dev", ""),
    ("patch", "environments.catalyst.catalyst.dev", "team-a"),
    ("patch", "environments.catalyst.catalyst.dev/status", "team-a"),
    # blockOwnerDeletion on its Jobs/ConfigMaps (OwnerReferencesPermissionEnforcement).
    ("update", "environments.catalyst.catalyst.dev/finalizers", "team-a"),
    ("watch", "projects.catalyst.catalyst.dev", ""),
    ("create", "jobs.batch", "team-a"),
    ("patch", "jobs.batch", "team-a"),
    ("delete", "jobs.batch", "team-a"),
    ("watch", "pods", ""),
    ("patch", "pods", "team-a"),  # only its PreDeploy gate's removal (admission.yaml)
    ("patch", "deployments.apps", "team-a"),
    ("create", "events", "team-a"),
    ("create", "leases.coordination.k8s.io", "devjobs-system"),
    ("watch", "configmaps", ""),
    ("create", "configmaps", "team-a"),
    ("patch", "configmaps", "team-a"),
    ("get", "pods/log", "team-a"),
    ("get", "secrets", "team-a"),
    ("create", "tokenreviews.authentication.k8s.io", ""),
    ("create", "subjectaccessreviews.authorization.k8s.io", ""),
]
DENIED = [
    ("list", "secrets", ""),
    ("watch", "secrets", "team-a"),
    ("create", "pods", "team-a"),
    ("create", "deployments.apps", "team-a"),
    ("delete", "deployments.apps", "team-a"),
    ("delete", "environments.catalyst.catalyst.dev", "team-a"),
    ("create", "environments.catalyst.catalyst.dev", "team-a"),
    ("update", "environments.catalyst.catalyst.dev", "team-a"),
    ("update", "projects.catalyst.catalyst.dev", "team-a"),
    ("delete", "configmaps", "team-a"),
    ("get", "pods/exec", "team-a"),
    ("update", "configmaps", "team-a"),
    ("create", "leases.coordination.k8s.io", "team-a"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
]


@pytest.fixture(scope="module")
def installed(kube_api: Any, catalyst_crds: list[str], project_crds: list[str]) -> Any:
    done = kubectl(kube_api, "apply", "-k", str(REPO / "deploy"), check=False)
    assert done.returncode == 0, done.stderr
    yield kube_api
    # No node may try to run the placeholder image in later tests of the session.
    kubectl(kube_api, "-n", "devjobs-system", "delete", "deployment", "devjobs-controller",
            "--ignore-not-found")  # fmt: skip
    # Nor may later tests' workload pods wait for a controller that does not run.
    for kind in ("mutatingadmissionpolicybinding", "mutatingadmissionpolicy"):
        kubectl(kube_api, "delete", kind, "devjobs-predeploy-gate", "--ignore-not-found")


def can_i(kube_api: Any, verb: str, resource: str, namespace: str) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    # `RESOURCE/SUB` is a subresource (`kubectl auth can-i` would read it as an object
    # named SUB of RESOURCE, which any rule on RESOURCE allows).
    resource, _, sub = resource.partition("/")
    scope += [f"--subresource={sub}"] if sub else []
    done = kubectl(kube_api, "auth", "can-i", verb, resource, "--as", SA, *scope, check=False)
    return done.stdout.strip() == "yes"


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED)
def test_the_controller_identity_may_do_its_job(
    installed: Any, verb: str, resource: str, namespace: str
) -> None:
    assert can_i(installed, verb, resource, namespace)


@pytest.mark.parametrize(("verb", "resource", "namespace"), DENIED)
def test_the_controller_identity_is_denied_what_it_does_not_need(
    installed: Any, verb: str, resource: str, namespace: str
) -> None:
    assert not can_i(installed, verb, resource, namespace)


def test_the_lease_it_may_update_is_only_its_own(installed: Any) -> None:
    ns = ["-n", "devjobs-system"]
    own = kubectl(installed, "auth", "can-i", "update", "leases/devjobs-controller", "--as", SA,
                  *ns, check=False)  # fmt: skip
    other = kubectl(installed, "auth", "can-i", "update", "leases/someone-else", "--as", SA,
                    *ns, check=False)  # fmt: skip
    assert (own.stdout.strip(), other.stdout.strip()) == ("yes", "no")


def dry_run_create(kube_api: Any, namespace: str, manifest: dict[str, Any]) -> str:
    """Create `manifest` in `namespace` as the controller's identity, admission and all
    but not stored (`--dry-run=server`); returns kubectl's error, '' when admitted."""
    path = Path(kube_api.kubeconfig).parent / f"dry-run-{namespace}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    done = kubectl(kube_api, "create", "-f", str(path), "-n", namespace, "--as", SA,
                   "--dry-run=server", check=False)  # fmt: skip
    return "" if done.returncode == 0 else done.stderr


def test_the_controller_may_write_only_in_catalyst_environment_namespaces(
    installed: Any, kube_client: Any
) -> None:
    """RBAC allows Jobs and ConfigMaps everywhere; deploy/admission.yaml's policy refuses
    them outside the namespaces Catalyst labels as environment namespaces."""
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_client)
    plain, environment = f"dj-plain-{os.getpid()}", f"dj-env-{os.getpid()}"
    core.create_namespace({"metadata": {"name": plain}})
    label = {"catalyst.dev/namespace-type": "environment"}
    core.create_namespace({"metadata": {"name": environment, "labels": label}})
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "probe"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox", "resources": {
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"cpu": "10m", "memory": "16Mi"}}}]}}},
    }  # fmt: skip
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}
    try:
        deadline = time.monotonic() + 30  # the policy takes effect within seconds
        while not dry_run_create(installed, plain, job) and time.monotonic() < deadline:
            time.sleep(0.5)
        for manifest in (job, configmap):
            refused = dry_run_create(installed, plain, manifest)
            assert "writes only in Catalyst environment namespaces" in refused, refused
            assert dry_run_create(installed, environment, manifest) == ""
        # The webhook's replay guard, in the controller's own namespace, is the exception.
        guard = {**configmap, "metadata": {"name": "devjobs-webhook-deliveries"}}
        assert dry_run_create(installed, "devjobs-system", guard) == ""
        other = {**configmap, "metadata": {"name": "anything-else"}}
        assert "writes only in Catalyst" in dry_run_create(installed, "devjobs-system", other)
        # An administrator (not the controller's identity) is not bound by it.
        path = Path(installed.kubeconfig).parent / "dry-run-admin.yaml"
        path.write_text(yaml.safe_dump(job))
        admin = kubectl(installed, "create", "-f", str(path), "-n", plain, "--dry-run=server")
        assert admin.returncode == 0
    finally:
        for ns in (plain, environment):
            core.delete_namespace(ns)


def test_workload_pods_are_gated_and_the_controller_may_only_remove_its_gate(
    installed: Any, kube_client: Any
) -> None:
    """deploy/predeploy-gate.yaml gates new `app=web` pods in environment namespaces (and
    no other pod); deploy/admission.yaml lets the controller's identity remove that gate
    and change nothing else of a pod. The pods are never scheduled: no node is needed."""
    import json

    from kubernetes import client

    from devjobs.kube.vocabulary import PREDEPLOY_GATE

    core: Any = client.CoreV1Api(kube_client)
    plain, environment = f"dj-gplain-{os.getpid()}", f"dj-genv-{os.getpid()}"
    core.create_namespace({"metadata": {"name": plain}})
    label = {"catalyst.dev/namespace-type": "environment"}
    core.create_namespace({"metadata": {"name": environment, "labels": label}})

    def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
        resources = {"cpu": "10m", "memory": "16Mi"}
        return {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": resources, "limits": resources}}]},
        }  # fmt: skip

    def gates(namespace: str, name: str) -> list[str]:
        found = core.read_namespaced_pod(name, namespace)
        return [g.name for g in found.spec.scheduling_gates or []]

    def patch_as_controller(name: str, ops: list[dict[str, Any]]) -> str:
        done = kubectl(installed, "-n", environment, "patch", "pod", name, "--as", SA,
                       "--type=json", "-p", json.dumps(ops), check=False)  # fmt: skip
        return "" if done.returncode == 0 else done.stderr

    try:
        deadline = time.monotonic() + 30  # the policy takes effect within seconds
        while True:
            core.create_namespaced_pod(environment, pod("web-1", {"app": "web"}))
            if gates(environment, "web-1") or time.monotonic() > deadline:
                break
            core.delete_namespaced_pod("web-1", environment, grace_period_seconds=0)
            wait = time.monotonic() + 10
            while time.monotonic() < wait:
                try:
                    core.read_namespaced_pod("web-1", environment)
                except client.exceptions.ApiException:
                    break
                time.sleep(0.2)
        assert gates(environment, "web-1") == [PREDEPLOY_GATE]
        core.create_namespaced_pod(environment, pod("other", {"app": "db"}))
        core.create_namespaced_pod(plain, pod("web-1", {"app": "web"}))
        assert gates(environment, "other") == [] and gates(plain, "web-1") == []

        relabel = [{"op": "add", "path": "/metadata/labels/x", "value": "y"}]
        refused = patch_as_controller("web-1", relabel)
        assert "may only remove its scheduling gate" in refused, refused
        assert (
            patch_as_controller("web-1", [{"op": "remove", "path": "/spec/schedulingGates/0"}])
            == ""
        )
        assert gates(environment, "web-1") == []
    finally:
        for ns in (plain, environment):
            core.delete_namespace(ns)


def test_the_controller_identity_replaces_log_records_and_applies_the_gate_record(
    installed: Any, kube_client: Any
) -> None:
    """What the controller writes to ConfigMaps, done as its identity through RBAC and
    deploy/admission.yaml: a log record kept, then replaced by the next run's (a patch:
    the role may not update ConfigMaps), and the gate's record applied twice."""
    from kubernetes import client

    from devjobs import catalyst
    from devjobs.kube import openings
    from devjobs.kube.client import Kube, connect
    from devjobs.kube.logstore import read_log_tail, save_log_tail
    from devjobs.resolver.environment import from_object

    core: Any = client.CoreV1Api(kube_client)
    team = f"dj-cm-{os.getpid()}"
    namespace = catalyst.target_namespace(team, "shop", "pr-1")
    label = {"catalyst.dev/namespace-type": "environment"}
    core.create_namespace({"metadata": {"name": namespace, "labels": label}})
    controller = connect(Path(installed.kubeconfig))
    controller.api_client.set_default_header("Impersonate-User", SA)
    labels = {"catalyst.dev/team": team, "catalyst.dev/project": "shop",
              "catalyst.dev/environment": "pr-1"}  # fmt: skip
    env_obj = {
        "apiVersion": "catalyst.catalyst.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "pr-1", "namespace": team, "uid": "uid-1", "labels": labels},
        "spec": {"projectRef": {"name": "shop"}, "type": "deployment", "sources": []},
    }
    try:
        deadline = time.monotonic() + 30  # the namespace's label reaches the policy
        while True:
            try:
                assert save_log_tail(controller, namespace, env_obj, "app/test", {"main": "1\n"})
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        second = {"other": "run 2\n"}
        assert save_log_tail(controller, namespace, env_obj, "app/test", second)
        assert not save_log_tail(controller, namespace, env_obj, "app/test", second)
        kept = read_log_tail(Kube(kube_client), namespace, "pr-1", "app/test")
        assert list(kept) == ["other"] and "run 2" in kept["other"]

        env = from_object(env_obj)
        assert env.jobs_namespace == namespace
        opening = openings.Opening("h1", ("a" * 40,))
        record = openings.configmap(env, (opening,))
        controller.apply(record)
        controller.apply(record)
        path = f"/api/v1/namespaces/{namespace}/configmaps/{record['metadata']['name']}"
        found = Kube(kube_client).get(path)
        assert openings.read_openings([found or {}], env, namespace) == (opening,)
    finally:
        core.delete_namespace(namespace)
