"""pytest plugin: a real Kubernetes cluster (v1.36.3), started by the test run itself.

Loaded for every run by tests/conftest.py (`pytest_plugins = ["tests.cluster.plugin"]`);
a cluster starts only when a test asks for one of these fixtures.

Fixtures
--------
``kube_api`` (session) -> :class:`tests.cluster.controlplane.KubeApi`
    Tier 1: etcd (tmpfs, --unsafe-no-fsync), kube-apiserver (RBAC, ServiceAccount admission),
    kube-controller-manager and kube-scheduler on 127.0.0.1, free ports, ready on /readyz.
    ``.kubeconfig`` (Path, admin: system:masters), ``.base_url`` ("https://127.0.0.1:PORT"),
    ``.client()`` (a new ready ``kubernetes.client.ApiClient``; use ``with kube_api.client()
    as c:``), ``.logs()`` ({component: last lines of its log}), ``.kubectl`` (Path of
    the kubectl v1.36.3 built with the cluster). Ready means /readyz is ok, the controller
    manager and scheduler are healthy and the ``default`` ServiceAccount exists. With
    ``DEVJOBS_TEST_KUBECONFIG=<path>`` the same fixture describes that existing cluster
    (kind, k3d, a real one) instead, and starts nothing.

``kube_client`` (session) -> ``kubernetes.client.ApiClient``
    One shared client of ``kube_api``, for tests that do not need their own.

``namespace`` (function) -> str
    A fresh namespace named after the test, whose ``default`` ServiceAccount exists
    (pods can be created at once); deleted after the test.

``catalyst_crds`` (session) -> list[str]
    The Catalyst CRDs (Environment, Project) from ``../shared/fixtures/catalyst`` (override:
    ``DEVJOBS_CATALYST_FIXTURES``), installed and Established. Returns the CRD names.

``project_crds`` (session) -> list[str]
    The project's own CRDs, ``schemas/crds/*.yaml`` (none yet is fine), installed and
    Established.

``catalyst_operator`` (session, tier 2) -> :class:`tests.cluster.catalyst_operator.CatalystOperator`
    The real Catalyst operator (built by ``catalyst_build.sh``) running against this
    cluster, with the images it names imported into the node; see
    ``tests/cluster/catalyst_operator.py`` (a plugin this module loads).

``kube_node`` (session, tier 2) -> :class:`tests.cluster.node.Node`
    A Ready node: kubelet + containerd + runc + CNI bridge in namespaces of its own.
    ``.name`` ("devjobs-node"), ``.test_image`` ("devjobs.test/busybox:1": busybox-static,
    so sh, echo, sleep, false, ...; use ``imagePullPolicy: IfNotPresent``), ``.logs()``,
    ``.node_ip`` (the node's address: pods and this machine reach it; serve a loopback
    server there with ``tests.cluster.nodenet.NodePortForward(node, port).url(...)``),
    ``.host_ip`` (this machine's end of the node's veth), ``.apiserver_url`` (the API
    server as the node and hostNetwork pods reach it; TLS name ``localhost``),
    ``.import_image(archive)``, ``.run_in_node(*argv)``. Against
    ``DEVJOBS_TEST_KUBECONFIG`` it is the cluster's first Ready node and ``.test_image``
    is ``DEVJOBS_TEST_IMAGE`` (default ``busybox:1.36``).

Marker
------
``@pytest.mark.tier2``: the test needs a real node (it gets ``kube_node`` started for it).
Skipped only when ``DEVJOBS_TIER2=0`` is set explicitly; otherwise a node that fails to
start is an ERROR, never a silent skip.

A failing test that used the cluster gets the components' log tails in its report.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import binaries, crds
from tests.cluster.controlplane import ControlPlane, KubeApi, from_kubeconfig
from tests.cluster.node import Node

LOG_LINES_IN_REPORT = 60

pytest_plugins = ["tests.cluster.catalyst_operator"]


@dataclass
class ExternalNode:
    """`kube_node` against an existing cluster: one of its Ready nodes."""

    name: str
    test_image: str
    node_ip: str = ""
    start_seconds: float = 0.0

    def logs(self, lines: int = 200) -> dict[str, str]:
        return {}


class _Session:
    """What this run started, for the report hook and the terminal summary."""

    api: KubeApi | None = None
    control_plane: ControlPlane | None = None
    node: Node | None = None


_session = _Session()


def _teardown_on_sigterm() -> None:
    """A SIGTERM (CI timeout, `kill`) should still run fixture teardown: pytest runs
    finalizers on KeyboardInterrupt, not when the default SIGTERM action kills it."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


def tier2_enabled() -> bool:
    return os.environ.get("DEVJOBS_TIER2", "1").strip() != "0"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tier2: needs a real node (kubelet + containerd); skipped only when DEVJOBS_TIER2=0",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build missing binaries before the first test, not inside one: the cold build takes
    minutes, longer than a per-test timeout, and its progress should be visible."""
    if os.environ.get("DEVJOBS_TEST_KUBECONFIG") or not binaries.missing():
        return
    if not any(
        "kube_api" in getattr(item, "fixturenames", ()) or item.get_closest_marker("tier2")
        for item in session.items
    ):
        return
    capman = session.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        binaries.find()


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApi]:
    if external := os.environ.get("DEVJOBS_TEST_KUBECONFIG"):
        _session.api = from_kubeconfig(Path(external))
        yield _session.api
        return
    bins = binaries.find()
    _teardown_on_sigterm()
    cp = ControlPlane(bins, tmp_path_factory.mktemp("cluster"))
    _session.control_plane = cp
    try:
        _session.api = cp.start()
        yield _session.api
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kube_client(kube_api: KubeApi) -> Iterator[Any]:
    with kube_api.client() as c:
        yield c


@pytest.fixture
def namespace(kube_client: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core: Any = client.CoreV1Api(kube_client)
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{secrets.token_hex(2)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"devjobs.test/ns": "1"}}})
    deadline = time.monotonic() + 30
    while True:  # the ServiceAccount admission rejects pods until `default` exists
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture(scope="session")
def catalyst_crds(kube_client: Any) -> list[str]:
    return crds.install(kube_client, crds.catalyst_crd_files())


@pytest.fixture(scope="session")
def project_crds(kube_client: Any) -> list[str]:
    return crds.install(kube_client, crds.project_crd_files())


@pytest.fixture(scope="session")
def kube_node(
    kube_api: KubeApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node | ExternalNode]:
    if not tier2_enabled():
        pytest.skip("tier 2 turned off (DEVJOBS_TIER2=0)")
    if kube_api.external:
        yield _external_node(kube_api)
        return
    node = Node(binaries.find(), kube_api, tmp_path_factory.mktemp("node"))
    _session.node = node
    try:
        yield node.start()
    finally:
        node.stop()


def _external_node(kube_api: KubeApi) -> ExternalNode:
    from kubernetes import client

    with kube_api.client() as c:
        nodes: Any = client.CoreV1Api(c).list_node()
        for n in nodes.items:
            if any(x.type == "Ready" and x.status == "True" for x in n.status.conditions or []):
                image = os.environ.get("DEVJOBS_TEST_IMAGE", "busybox:1.36")
                return ExternalNode(name=n.metadata.name, test_image=image)
    raise RuntimeError(f"no Ready node in the cluster of {kube_api.kubeconfig}")


@pytest.fixture(autouse=True)
def _tier2_gate(request: pytest.FixtureRequest) -> None:
    """Start the node for `@pytest.mark.tier2` tests; skip them only on DEVJOBS_TIER2=0."""
    if request.node.get_closest_marker("tier2") is None:
        return
    if not tier2_enabled():
        pytest.skip("tier 2 turned off (DEVJOBS_TIER2=0)")
    request.getfixturevalue("kube_node")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    uses_cluster = "kube_api" in getattr(item, "fixturenames", ())
    if rep.failed and uses_cluster:
        logs: dict[str, str] = {}
        if _session.api is not None:
            logs.update(_session.api.logs(LOG_LINES_IN_REPORT))
        if _session.node is not None:
            logs.update(_session.node.logs(LOG_LINES_IN_REPORT))
        for name, text in logs.items():
            rep.sections.append((f"{name} log (last {LOG_LINES_IN_REPORT} lines)", text))
    return rep


def pytest_terminal_summary(terminalreporter: Any) -> None:
    cp, node = _session.control_plane, _session.node
    if cp is not None and cp.start_seconds:
        line = f"devjobs test cluster: control plane ready in {cp.start_seconds:.1f}s"
        if node is not None and node.start_seconds:
            line += f", node Ready in {node.start_seconds:.1f}s"
        terminalreporter.write_line(line)
