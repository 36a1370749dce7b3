"""Tier 1: etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster import pki as pkimod
from tests.cluster.procs import Proc, free_port, tail, wait_for

SERVICE_CIDR = "10.96.0.0/16"


@dataclass
class KubeApi:
    """A reachable cluster: ours (tier 1) or the one `DEVJOBS_TEST_KUBECONFIG` names."""

    kubeconfig: Path
    base_url: str
    log_files: dict[str, Path] = field(default_factory=dict)
    external: bool = False
    pki: pkimod.Pki | None = None
    kubectl: Path | None = None

    def client(self) -> Any:
        """A new, ready `kubernetes.client.ApiClient` (close it, or use it in `with`)."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=cfg
        )
        return client.ApiClient(cfg)

    def logs(self, lines: int = 200) -> dict[str, str]:
        """The last `lines` lines of each component's log, by component name."""
        return {name: tail(path, lines) for name, path in self.log_files.items()}


def from_kubeconfig(path: Path) -> KubeApi:
    """Describe an existing cluster (kind, k3d, a real one) from its kubeconfig."""
    import yaml

    kc = yaml.safe_load(path.read_text())
    ctx_name = kc.get("current-context")
    ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
    kubectl = shutil.which("kubectl")
    return KubeApi(
        kubeconfig=path,
        base_url=str(cluster["server"]),
        external=True,
        kubectl=Path(kubectl) if kubectl else None,
    )


def write_kubeconfig(
    path: Path, server: str, ca: Path, cert: Path, key: Path, tls_server_name: str | None = None
) -> Path:
    """A kubeconfig (JSON is YAML) with file references, readable by kubectl and the client."""
    cluster: dict[str, str] = {"server": server, "certificate-authority": str(ca)}
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    kc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devjobs-test", "cluster": cluster}],
        "users": [
            {
                "name": "devjobs-test",
                "user": {"client-certificate": str(cert), "client-key": str(key)},
            }
        ],
        "contexts": [
            {"name": "devjobs-test", "context": {"cluster": "devjobs-test", "user": "devjobs-test"}}
        ],
        "current-context": "devjobs-test",
    }
    path.write_text(json.dumps(kc, indent=2))
    return path


def _etcd_data_dir() -> Path:
    """etcd data goes on tmpfs (fsync-free, gone after the run), named after our pid so
    that a later run removes what a killed one left."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and _is_tmpfs(shm) else Path(tempfile.gettempdir())
    for stale in base.glob("devjobs-etcd-*-*"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"devjobs-etcd-{os.getpid()}-", dir=base))


def _is_tmpfs(p: Path) -> bool:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[1] == str(p) and parts[2] == "tmpfs":
            return True
    return False


def _https_ok(url: str, ctx: ssl.SSLContext) -> bool:
    with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
        return bool(r.status == 200)


class ControlPlane:
    """Start (in parallel, all on 127.0.0.1 with free ports) and stop the control plane."""

    def __init__(self, bins: dict[str, Path], workdir: Path) -> None:
        self.bins = bins
        self.dir = workdir
        self.procs: list[Proc] = []
        self.data_dir: Path | None = None
        self.api: KubeApi | None = None
        self.start_seconds = 0.0

    def start(self, timeout: float = 90.0) -> KubeApi:
        t0 = time.monotonic()
        d = self.dir
        logs = d / "logs"
        names = ["127.0.0.1", "localhost", "10.96.0.1", "kubernetes", "kubernetes.default"]
        pki = pkimod.generate(d / "pki", [*names, "kubernetes.default.svc"])
        self.data_dir = _etcd_data_dir()
        etcd_port, peer_port, api_port, kcm_port, sched_port = (free_port() for _ in range(5))
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        base_url = f"https://127.0.0.1:{api_port}"
        admin_kc = write_kubeconfig(
            d / "admin.kubeconfig", base_url, pki.ca.cert, pki.admin.cert, pki.admin.key
        )
        b = {k: str(v) for k, v in self.bins.items()}
        self.procs.append(
            Proc(
                "etcd",
                [
                    b["etcd"], "--name=devjobs", f"--data-dir={self.data_dir}",
                    f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=devjobs=http://127.0.0.1:{peer_port}",
                    "--unsafe-no-fsync", "--log-level=warn",
                ],
                logs / "etcd.log",
            )
        )  # fmt: skip
        self.procs.append(
            Proc(
                "kube-apiserver",
                [
                    b["kube-apiserver"], f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                    f"--secure-port={api_port}", "--endpoint-reconciler-type=none",
                    f"--tls-cert-file={pki.apiserver.cert}",
                    f"--tls-private-key-file={pki.apiserver.key}",
                    f"--client-ca-file={pki.ca.cert}",
                    f"--service-account-key-file={pki.sa_pub}",
                    f"--service-account-signing-key-file={pki.sa_key}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--authorization-mode=Node,RBAC",
                    "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,NodeRestriction",
                    "--allow-privileged=true",
                    f"--kubelet-client-certificate={pki.apiserver_kubelet_client.cert}",
                    f"--kubelet-client-key={pki.apiserver_kubelet_client.key}",
                    "--kubelet-preferred-address-types=InternalIP",
                    "--profiling=false", "--v=1",
                ],
                logs / "kube-apiserver.log",
            )
        )  # fmt: skip
        self.procs.append(
            Proc(
                "kube-controller-manager",
                [
                    b["kube-controller-manager"], f"--kubeconfig={admin_kc}",
                    f"--authentication-kubeconfig={admin_kc}",
                    f"--authorization-kubeconfig={admin_kc}",
                    "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--root-ca-file={pki.ca.cert}", "--use-service-account-credentials=false",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--allocate-node-cidrs=false", "--leader-elect=false",
                    "--profiling=false", "--v=1",
                ],
                logs / "kube-controller-manager.log",
            )
        )  # fmt: skip
        self.procs.append(
            Proc(
                "kube-scheduler",
                [
                    b["kube-scheduler"], f"--kubeconfig={admin_kc}",
                    f"--authentication-kubeconfig={admin_kc}",
                    f"--authorization-kubeconfig={admin_kc}",
                    "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
                    "--leader-elect=false", "--profiling=false", "--v=1",
                ],
                logs / "kube-scheduler.log",
            )
        )  # fmt: skip
        self.api = KubeApi(
            kubeconfig=admin_kc,
            base_url=base_url,
            log_files={p.name: p.log_path for p in self.procs},
            pki=pki,
            kubectl=self.bins.get("kubectl"),
        )
        admin = ssl.create_default_context(cafile=str(pki.ca.cert))
        admin.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # kcm/scheduler serve self-signed certificates
        checks = {
            "kube-apiserver /readyz": lambda: _https_ok(f"{base_url}/readyz", admin),
            "kube-controller-manager /healthz": lambda: _https_ok(
                f"https://127.0.0.1:{kcm_port}/healthz", insecure
            ),
            "kube-scheduler /healthz": lambda: _https_ok(
                f"https://127.0.0.1:{sched_port}/healthz", insecure
            ),
            # The controllers run (pods can be admitted) once this ServiceAccount exists.
            "the default ServiceAccount": lambda: _https_ok(
                f"{base_url}/api/v1/namespaces/default/serviceaccounts/default", admin
            ),
        }
        with ThreadPoolExecutor(len(checks)) as pool:
            futures = [
                pool.submit(wait_for, what, check, timeout, self.procs)
                for what, check in checks.items()
            ]
            for f in futures:
                f.result()
        self.start_seconds = time.monotonic() - t0
        return self.api

    def logs_text(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name}\n{tail(p.log_path, lines)}" for p in self.procs)

    def stop(self) -> None:
        """Stop in reverse order (clients before etcd), then drop the tmpfs data."""
        for p in reversed(self.procs):
            p.stop()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
