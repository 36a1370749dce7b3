"""Tier 2: a real node (containerd + runc + CNI bridge + kubelet) in namespaces of its own.

Layout, chosen so that nothing outlives the run and a second run on the machine works:
- A holder process (our pause binary) started by `unshare --net --mount --propagation slave`
  owns a fresh network namespace and mount namespace. containerd and kubelet join both
  (`nsenter -t <holder> -m -n`), so every mount they make (the state tmpfs, pod volumes,
  overlay rootfs, pod netns files) lives in that mount namespace and vanishes with it, and
  the node's network (veth, CNI bridge, pods) vanishes with the network namespace.
- Every node process (holder, containerd, its shims, kubelet, pods) is in the cgroup
  `/devjobs-<id>` of each v1 hierarchy (kubelet's `cgroupRoot`), so teardown kills exactly
  that tree, then removes the cgroups.
- The node's IP is on a veth pair (host side `host_ip` .1, node side `node_ip` .2 of a
  free 10.213.N.0/30). The netns has no default route: nothing in it reaches beyond this
  machine. kubelet reaches the loopback-only apiserver through a TCP forwarder listening
  on `host_ip` (`apiserver_url`).
- Pods (bridge cni0, POD_CIDR, no masquerade) have a default route via the bridge, so they
  reach the node's own addresses: a server listening on `node_ip` in the node's netns
  (`nodenet.NodePortForward`) serves pods and this machine at one URL. The node forwards
  nothing from pods (`ip rule ... iif cni0 unreachable`, after the local table): a pod's
  packet to `host_ip` would reach this machine with a pod source address, whose replies
  would follow this machine's default route off it.
- `/run/devjobs-test/<id>/owner` records the pytest pid: a later run cleans up after a run
  that was killed before its teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.cluster import images
from tests.cluster.controlplane import KubeApi, write_kubeconfig
from tests.cluster.nodenet import TcpForwarder, listen
from tests.cluster.procs import Proc, run, tail, wait_for

STATE_ROOT = Path("/run/devjobs-test")
CGROUP_FS = Path("/sys/fs/cgroup")
CNI_BIN = Path(os.environ.get("DEVJOBS_CNI_BIN", "/usr/lib/cni"))
POD_CIDR = "10.244.0.0/24"
BRIDGE = "cni0"  # the CNI bridge; its address (first of POD_CIDR) is the pods' gateway
POD_NO_FORWARD_PREF = 100  # `ip rule` priority: the node forwards nothing from pods
NODE_NAME = "devjobs-node"
REQUIRED_TOOLS = (
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "nsenter",
    "unshare",
    "ip",
)


def missing_prerequisites() -> list[str]:
    """What tier 2 needs from the machine and does not find (setup.sh installs it)."""
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    missing += [
        f"{CNI_BIN}/{p}" for p in ("bridge", "host-local", "loopback") if not (CNI_BIN / p).exists()
    ]
    if not images.BUSYBOX.exists():
        missing.append(str(images.BUSYBOX))
    if os.geteuid() != 0:
        missing.append("root (tier 2 creates namespaces, cgroups and mounts)")
    return missing


# --- cgroups -----------------------------------------------------------------------------


def _hierarchies() -> list[Path]:
    """Mounted cgroup v1 hierarchies (cgroup v2: the single unified one)."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    return sorted(
        p
        for p in CGROUP_FS.iterdir()
        if p.is_dir()
        and not p.is_symlink()
        and (p / "cgroup.procs").exists()
        and p.name != "unified"
    )


def _make_cgroup(rel: str) -> None:
    for h in _hierarchies():
        parent = h
        for part in rel.strip("/").split("/"):
            child = parent / part
            child.mkdir(exist_ok=True)
            # cgroup v1 cpuset children start empty and refuse tasks until filled in.
            for f in ("cpuset.cpus", "cpuset.mems"):
                has = (child / f).exists() and (parent / f).exists()
                if has and not (child / f).read_text().strip():
                    (child / f).write_text((parent / f).read_text())
            parent = child


def _join_cgroup(rel: str) -> None:
    """Move the calling process into `rel` in every hierarchy (runs in preexec_fn)."""
    for h in _hierarchies():
        with open(h / rel.strip("/") / "cgroup.procs", "w") as f:
            f.write("0")


def _cgroup_pids(rel: str) -> set[int]:
    pids: set[int] = set()
    for h in _hierarchies():
        root = h / rel.strip("/")
        if not root.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(root):
            try:
                text = (Path(dirpath) / "cgroup.procs").read_text()
            except OSError:
                continue
            pids.update(int(x) for x in text.split())
    return pids


def _kill_cgroup(rel: str, timeout: float = 15.0) -> None:
    """SIGKILL every process in the cgroup tree until it is empty."""
    deadline = time.monotonic() + timeout
    while pids := _cgroup_pids(rel):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes left in cgroup {rel}: {sorted(pids)}")
        time.sleep(0.1)


def _remove_cgroup(rel: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for h in _hierarchies():
        root = h / rel.strip("/")
        if not root.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
            while True:
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


# --- stale state of killed runs ----------------------------------------------------------


def _proc_start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _cleanup(run_id: str, host_veth: str | None) -> None:
    _kill_cgroup(f"devjobs-{run_id}")
    _remove_cgroup(f"devjobs-{run_id}")
    if host_veth and Path(f"/sys/class/net/{host_veth}").exists():
        subprocess.run(["ip", "link", "del", host_veth], capture_output=True)
    shutil.rmtree(STATE_ROOT / run_id, ignore_errors=True)


def cleanup_stale() -> list[str]:
    """Tear down what runs killed before their teardown left behind; returns their ids."""
    cleaned: list[str] = []
    if not STATE_ROOT.is_dir():
        return cleaned
    for d in STATE_ROOT.iterdir():
        try:
            owner = json.loads((d / "owner").read_text())
        except (OSError, ValueError):
            owner = {}
        pid = owner.get("pid")
        if pid and _proc_start_time(pid) == owner.get("start"):
            continue  # still running (another session's test run)
        _cleanup(d.name, owner.get("host_veth"))
        cleaned.append(d.name)
    return cleaned


# --- network -----------------------------------------------------------------------------


def _free_subnet() -> int:
    """N such that 10.213.N.0/30 overlaps nothing configured on the host."""
    used = run(["ip", "-4", "-o", "addr"]) + run(["ip", "-4", "route"])
    free = [n for n in range(256) if f"10.213.{n}." not in used]
    if free:  # random: two runs starting at once should not pick the same one
        return secrets.choice(free)
    raise RuntimeError("no free 10.213.N.0/30 subnet for the test node")


# --- the node ----------------------------------------------------------------------------


class Node:
    """Start and stop one kubelet node registered with `api` (a tier-1 control plane)."""

    def __init__(self, bins: dict[str, Path], api: KubeApi, workdir: Path) -> None:
        self.bins = bins
        self.api = api
        self.dir = workdir
        self.id = secrets.token_hex(3)
        self.cgroup = f"devjobs-{self.id}"
        self.state = STATE_ROOT / self.id
        self.host_veth = f"dj{self.id}h"
        self.procs: list[Proc] = []
        self.holder: Proc | None = None
        self.forwarder: TcpForwarder | None = None
        self.node_ip = ""  # the node's address: pods and this machine reach it
        self.host_ip = ""  # this machine's end of the veth: the node's netns reaches it
        self.name = NODE_NAME
        self.test_image = images.TEST_IMAGE
        self.pause_image = images.PAUSE_IMAGE
        self.start_seconds = 0.0
        self.log_files: dict[str, Path] = {}

    # what callers use --------------------------------------------------------------
    @property
    def netns_pid(self) -> int:
        """A process in the node's network and mount namespaces (for setns / nsenter)."""
        assert self.holder is not None, "the node is not started"
        return self.holder.pid

    @property
    def apiserver_url(self) -> str:
        """The API server as the node's network namespace reaches it (kubelet, hostNetwork
        pods): ``https://host_ip:PORT``; its certificate is checked as ``localhost``."""
        assert self.forwarder is not None, "the node is not started"
        return f"https://{self.host_ip}:{self.forwarder.port}"

    def import_image(self, archive: Path) -> None:
        """Import a `docker save` archive into the node's containerd (namespace k8s.io)."""
        sock = f"{self.state}/containerd.sock"
        run(self._in_node("ctr", "--address", sock, "--namespace", "k8s.io", "images",
                          "import", str(archive)))  # fmt: skip

    def run_in_node(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the node's network and mount namespaces (not checked)."""
        return subprocess.run(self._in_node(*argv), capture_output=True, text=True)

    # helpers --------------------------------------------------------------------------
    def _in_node(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.netns_pid), "-m", "-n", "--", *argv]

    def _start(self, name: str, argv: list[str]) -> Proc:
        p = Proc(name, argv, self.dir / "logs" / f"{name}.log", preexec=self._join)
        self.procs.append(p)
        self.log_files[name] = p.log_path
        return p

    def _join(self) -> None:
        _join_cgroup(f"{self.cgroup}/node")

    def logs(self, lines: int = 200) -> dict[str, str]:
        return {name: tail(path, lines) for name, path in self.log_files.items()}

    # start ----------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> Node:
        if missing := missing_prerequisites():
            raise RuntimeError(
                "tier 2 (a real node) cannot start; missing: "
                + ", ".join(missing)
                + ". Run `bash tests/cluster/setup.sh`, or set DEVJOBS_TIER2=0 to skip tier 2."
            )
        assert self.api.pki is not None, (
            "tier 2 needs the tier-1 control plane (not an external cluster)"
        )
        t0 = time.monotonic()
        cleanup_stale()
        etc = self.dir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        n = _free_subnet()
        self.host_ip, self.node_ip = f"10.213.{n}.1", f"10.213.{n}.2"
        (self.state / "owner").write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "start": _proc_start_time(os.getpid()),
                    "host_veth": self.host_veth,
                }
            )
        )
        _make_cgroup(f"{self.cgroup}/node")

        # Namespaces and the state tmpfs (visible only inside the node's mount namespace).
        pause = images.pause_binary()
        self.holder = self._start(
            "node-namespaces",
            ["unshare", "--net", "--mount", "--propagation", "slave", "--", str(pause)],
        )
        wait_for(
            "the node's namespaces",
            lambda: os.readlink(f"/proc/{self.holder.pid}/exe") == str(pause),  # type: ignore[union-attr]
            10,
            [self.holder],
        )
        st = str(self.state)
        private = [st, "/var/lib/cni", "/var/log/containers", "/run/containerd", "/run/netns"]
        for p in private:
            Path(p).mkdir(parents=True, exist_ok=True)
        mounts = "; ".join(f"mount -t tmpfs -o mode=755 devjobs-node {p}" for p in private)
        run(self._in_node("sh", "-ec", mounts))

        # Network: veth pair, node side renamed eth0 inside the namespace.
        run(["ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", f"dj{self.id}n",
             "netns", str(self.holder.pid)])  # fmt: skip
        run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_veth])
        run(["ip", "link", "set", self.host_veth, "up"])
        inside = f"ip link set lo up; ip link set dj{self.id}n name eth0; "
        inside += f"ip addr add {self.node_ip}/30 dev eth0; ip link set eth0 up; "
        # Pods reach the node's own addresses (the local table comes first), nothing else.
        inside += f"ip rule add pref {POD_NO_FORWARD_PREF} iif {BRIDGE} unreachable"
        run(self._in_node("sh", "-ec", inside))
        api_port = int(self.api.base_url.rsplit(":", 1)[1])
        self.forwarder = TcpForwarder(listen(self.host_ip), api_port, "devjobs-apiserver-forward")

        # containerd with our sandbox image and CNI.
        sock = f"{st}/containerd.sock"
        (etc / "net.d").mkdir(exist_ok=True)
        (etc / "net.d" / "10-devjobs.conflist").write_text(json.dumps(self._cni_config()))
        (etc / "containerd.toml").write_text(self._containerd_config(sock, etc / "net.d"))
        containerd = self._start(
            "containerd", self._in_node("containerd", "--config", str(etc / "containerd.toml"))
        )
        ctr = self._in_node("ctr", "--address", sock, "--namespace", "k8s.io")
        wait_for(
            "containerd",
            lambda: subprocess.run([*ctr, "version"], capture_output=True).returncode == 0,
            30,
            [containerd],
        )
        for name, build in (("pause", images.pause_image), ("busybox", images.busybox_image)):
            self.import_image(build(self.dir / "images" / f"{name}.tar"))

        # kubelet.
        pki = self.api.pki
        cert = pki.client("kubelet", f"system:node:{self.name}", "system:nodes")
        kubeconfig = write_kubeconfig(
            etc / "kubelet.kubeconfig", self.apiserver_url, pki.ca.cert,
            cert.cert, cert.key, tls_server_name="localhost",
        )  # fmt: skip
        (etc / "kubelet.yaml").write_text(json.dumps(self._kubelet_config(sock, str(pki.ca.cert))))
        kubelet = self._start(
            "kubelet",
            self._in_node(
                str(self.bins["kubelet"]), f"--config={etc / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfig}", f"--root-dir={st}/kubelet",
                f"--hostname-override={self.name}", f"--node-ip={self.node_ip}", "--v=1",
            ),
        )  # fmt: skip
        wait_for(
            f"node {self.name} Ready", self._ready, timeout, [containerd, kubelet, self.holder], 0.5
        )
        self.start_seconds = time.monotonic() - t0
        return self

    def _ready(self) -> bool:
        from kubernetes import client

        with self.api.client() as c:
            node: Any = client.CoreV1Api(c).read_node(self.name)
        return any(
            cond.type == "Ready" and cond.status == "True"
            for cond in (node.status.conditions or [])
        )

    def _cni_config(self) -> dict[str, Any]:
        return {
            "cniVersion": "0.4.0",
            "name": "devjobs",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "isDefaultGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "dataDir": f"{self.state}/cni-ipam",
                    },
                }
            ],
        }

    def _containerd_config(self, sock: str, cni_conf_dir: Path) -> str:
        st = self.state
        return f"""\
version = 2
root = "{st}/containerd/root"
state = "{st}/containerd/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{sock}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{st}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE_IMAGE}"
  enable_selinux = false
  disable_apparmor = true
  # Sandboxes without CAP_SYS_RESOURCE (this machine's kind) cannot lower oom_score_adj
  # to kubelet's -998; clamp it to containerd's own instead.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{os.environ.get("DEVJOBS_RUNC", "runc")}"
        Root = "{st}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf_dir}"
"""

    def _kubelet_config(self, sock: str, ca: str) -> dict[str, Any]:
        cgroup_v1 = not (CGROUP_FS / "cgroup.controllers").exists()
        cfg: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.node_ip,
            "healthzBindAddress": "127.0.0.1",
            "readOnlyPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": ca},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{sock}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup}",
            "failSwapOn": False,
            "resolvConf": "",
            "clusterDomain": "cluster.local",
            "podLogsDirectory": f"{self.state}/pod-logs",
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "registerNode": True,
            "serializeImagePulls": False,
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
        }
        if cgroup_v1:
            cfg["failCgroupV1"] = False
        return cfg

    # stop -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Kill kubelet, pods, shims, containerd and the holder; remove cgroups and veth."""
        for p in self.procs:
            if p.name == "kubelet":
                p.stop(timeout=5)
        if self.forwarder is not None:
            self.forwarder.stop()
        _cleanup(self.id, self.host_veth)
        for p in reversed(self.procs):
            p.stop(timeout=1)
