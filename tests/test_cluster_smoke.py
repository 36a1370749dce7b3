"""Smoke tests proving the test cluster is real Kubernetes: API validation, Job controller,
garbage collector, and (tier 2) real pods running real commands on a real node."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.catalyst import GROUP, VERSION, environment
from tests.cluster.controlplane import KubeApi
from tests.cluster.node import Node
from tests.cluster.nodenet import NodePortForward

ENVIRONMENTS = (GROUP, VERSION, "environments")
REPO = Path(__file__).resolve().parents[1]


def wait_until(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll until `check` returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def job_condition(batch: Any, ns: str, name: str) -> Any:
    """The Job's terminal condition (Complete or Failed), if it has one yet."""
    job = batch.read_namespaced_job(name, ns)
    for c in job.status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c
    return None


def job_manifest(name: str, image: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", script],
                        }
                    ],
                }
            },
        },
    }


def job_pods(core: Any, ns: str, job: str) -> list[Any]:
    return list(core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items)


# --- tier 1: control plane only --------------------------------------------------------


def test_control_plane_is_kubernetes_v1_36_3_with_its_builtin_rbac(
    kube_api: KubeApi, kube_client: Any
) -> None:
    version: Any = client.VersionApi(kube_client).get_code()
    rbac: Any = client.RbacAuthorizationV1Api(kube_client)

    if not kube_api.external:
        assert version.git_version == "v1.36.3"
        assert {"etcd", "kube-apiserver", "kube-controller-manager"} <= set(kube_api.logs())
    assert rbac.read_cluster_role("cluster-admin").rules[0].verbs == ["*"]


def test_deleting_a_jobs_owner_deletes_the_job(kube_client: Any, namespace: str) -> None:
    core: Any = client.CoreV1Api(kube_client)
    batch: Any = client.BatchV1Api(kube_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    job = job_manifest("owned", "devjobs.test/busybox:1", "true", suspend=True)
    job["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    batch.create_namespaced_job(namespace, job)

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def job_gone() -> bool:
        try:
            batch.read_namespaced_job("owned", namespace)
        except ApiException as e:
            return bool(e.status == 404)
        return False

    wait_until("the garbage collector to delete the Job", job_gone, timeout=60)


def _condition(type_: str) -> dict[str, str]:
    return {
        "type": type_,
        "status": "True",
        "reason": "Succeeded",
        "message": "unit tests passed",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def test_environment_status_accepts_dotted_job_condition_type(
    kube_client: Any, catalyst_crds: list[str], namespace: str
) -> None:
    assert "environments.catalyst.catalyst.dev" in catalyst_crds
    api: Any = client.CustomObjectsApi(kube_client)
    body = environment("pr-1", namespace, type_="deployment")
    api.create_namespaced_custom_object(*ENVIRONMENTS[:2], namespace, ENVIRONMENTS[2], body)

    patched = api.patch_namespaced_custom_object_status(
        *ENVIRONMENTS[:2], namespace, ENVIRONMENTS[2], "pr-1",
        {"status": {"conditions": [_condition("Job.backend.unit-tests")]}},
    )  # fmt: skip

    assert [c["type"] for c in patched["status"]["conditions"]] == ["Job.backend.unit-tests"]


def test_environment_status_rejects_colon_job_condition_type(
    kube_client: Any, catalyst_crds: list[str], namespace: str
) -> None:
    api: Any = client.CustomObjectsApi(kube_client)
    body = environment("pr-2", namespace, type_="deployment")
    api.create_namespaced_custom_object(*ENVIRONMENTS[:2], namespace, ENVIRONMENTS[2], body)

    with pytest.raises(ApiException) as err:
        api.patch_namespaced_custom_object_status(
            *ENVIRONMENTS[:2], namespace, ENVIRONMENTS[2], "pr-2",
            {"status": {"conditions": [_condition("Job:backend:unit-tests")]}},
        )  # fmt: skip

    assert err.value.status == 422
    assert "status.conditions[0].type" in str(err.value.body)


# --- tier 2: a real node ---------------------------------------------------------------


@pytest.mark.tier2
def test_job_echo_ok_completes_and_its_pod_log_reads_ok(
    kube_client: Any, kube_node: Any, namespace: str
) -> None:
    core: Any = client.CoreV1Api(kube_client)
    batch: Any = client.BatchV1Api(kube_client)
    batch.create_namespaced_job(namespace, job_manifest("echo", kube_node.test_image, "echo ok"))

    cond = wait_until("Job echo to finish", lambda: job_condition(batch, namespace, "echo"))

    assert cond.type == "Complete"
    (pod,) = job_pods(core, namespace, "echo")
    assert pod.spec.node_name == kube_node.name
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace) == "ok\n"


@pytest.mark.tier2
def test_job_exit_3_fails_after_backoff_limit_retries_with_exit_code_3(
    kube_client: Any, kube_node: Any, namespace: str
) -> None:
    core: Any = client.CoreV1Api(kube_client)
    batch: Any = client.BatchV1Api(kube_client)
    job = job_manifest("exit3", kube_node.test_image, "exit 3", backoffLimit=1)
    batch.create_namespaced_job(namespace, job)

    cond = wait_until("Job exit3 to fail", lambda: job_condition(batch, namespace, "exit3"), 150)

    assert (cond.type, cond.reason) == ("Failed", "BackoffLimitExceeded")
    assert batch.read_namespaced_job("exit3", namespace).status.failed == 2  # 1 + backoffLimit
    pods = job_pods(core, namespace, "exit3")
    assert len(pods) == 2
    for pod in pods:
        (status,) = pod.status.container_statuses
        assert status.state.terminated.exit_code == 3


@pytest.mark.tier2
def test_job_past_active_deadline_fails_with_deadline_exceeded_and_its_pod_is_stopped(
    kube_client: Any, kube_node: Any, namespace: str
) -> None:
    core: Any = client.CoreV1Api(kube_client)
    batch: Any = client.BatchV1Api(kube_client)
    job = job_manifest("slow", kube_node.test_image, "sleep 600", activeDeadlineSeconds=3)
    batch.create_namespaced_job(namespace, job)

    cond = wait_until("Job slow to fail", lambda: job_condition(batch, namespace, "slow"))

    assert (cond.type, cond.reason) == ("Failed", "DeadlineExceeded")
    wait_until(
        "the Job controller to delete the running pod",
        lambda: all(
            p.metadata.deletion_timestamp or p.status.phase == "Failed"
            for p in job_pods(core, namespace, "slow")
        ),
        30,
    )


# --- the plugin itself -------------------------------------------------------------------

_FAILING_TEST = """
def test_fails(kube_api):
    assert False, "deliberate"
"""


def test_a_failing_cluster_test_reports_the_components_logs(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(_FAILING_TEST)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DEVJOBS_TIER2": "0"}
    env.pop("DEVJOBS_TEST_KUBECONFIG", None)

    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.cluster.plugin", "-p", "no:cacheprovider",
         "-q", "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert res.returncode == 1, res.stdout + res.stderr
    for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert f"{component} log (last 60 lines)" in res.stdout


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from this machine\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.mark.tier2
def test_a_pod_reaches_a_server_on_the_node_address_and_nothing_beyond_the_node(
    kube_client: Any, kube_node: Any, namespace: str
) -> None:
    if not isinstance(kube_node, Node):
        pytest.skip("checks the network of the node this test run starts")
    core: Any = client.CoreV1Api(kube_client)
    batch: Any = client.BatchV1Api(kube_client)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    forward = NodePortForward(kube_node, server.server_address[1])
    try:
        url = forward.url("http", "hello")
        assert url.startswith(f"http://{kube_node.node_ip}:")
        fetch = job_manifest("fetch", kube_node.test_image, f"wget -q -O - {url}")
        batch.create_namespaced_job(namespace, fetch)
        cond = wait_until("Job fetch to finish", lambda: job_condition(batch, namespace, "fetch"))
        (pod,) = job_pods(core, namespace, "fetch")
        log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
        assert cond.type == "Complete", log
        assert log == "hello from this machine\n"
        with urllib.request.urlopen(url, timeout=10) as answer:  # this machine: same URL
            assert answer.read() == b"hello from this machine\n"
    finally:
        forward.stop()
        server.shutdown()

    # Routing decisions, asked of the node's kernel (no packet is sent): the node has no
    # route off this machine, and forwards nothing from pods, not even to this machine's
    # end of the veth; a pod's packets to the node's own address are delivered locally.
    pod_ip = pod.status.pod_ip
    no_default = kube_node.run_in_node("ip", "-4", "route", "show", "default")
    assert no_default.returncode == 0 and no_default.stdout.strip() == ""
    off_machine = kube_node.run_in_node("ip", "-4", "route", "get", "192.0.2.1")
    assert off_machine.returncode != 0 and "unreachable" in off_machine.stderr
    for target in (kube_node.host_ip, "192.0.2.1"):
        forwarded = kube_node.run_in_node(
            "ip", "-4", "route", "get", target, "from", pod_ip, "iif", "cni0"
        )
        assert forwarded.returncode != 0, (target, forwarded.stdout)
    local = kube_node.run_in_node(
        "ip", "-4", "route", "get", kube_node.node_ip, "from", pod_ip, "iif", "cni0"
    )
    assert local.returncode == 0 and local.stdout.startswith("local "), local.stdout
