"""A private Docker engine for the tests: Debian's dockerd on its own containerd.

Everything lives under one scratch directory: containerd's root, state and sockets,
dockerd's data-root, exec-root, pidfile and API socket. Nothing touches the machine's
/run/containerd, /var/lib/containerd or /var/lib/docker (a kubelet's containerd may run
there), no iptables rules or bridge are made (`--iptables=false --bridge=none`), and
`stop()` ends both daemons and leaves no mount behind. The test image is imported from a
rootfs built out of Debian's busybox-static: no registry is needed.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

TEST_IMAGE = "devjobs.test/busybox:1"
BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "echo", "sleep", "cat", "false", "true", "env", "pwd", "ls", "id", "mkdir",
    "rm", "test", "[", "printf", "grep", "sed", "kill", "touch", "wc", "date", "seq",
)  # fmt: skip
REQUIRED = ("dockerd", "containerd", "runc", "docker")
SETUP_HINT = "install them with: bash tests/docker/setup.sh"


class EngineError(RuntimeError):
    pass


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class DockerEngine:
    """`start()` then use `.host` (a DOCKER_HOST value) or `.env`; `stop()` always."""

    def __init__(self) -> None:
        # Short: unix socket paths are limited to 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="dj-docker-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self._containerd: subprocess.Popen[bytes] | None = None
        self._dockerd: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The caller's environment, pointed at this engine."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def start(self, timeout: float = 90) -> None:
        missing = [name for name in REQUIRED if shutil.which(name) is None]
        if missing or not BUSYBOX.exists():
            raise EngineError(f"missing {', '.join(missing) or BUSYBOX}; {SETUP_HINT}")
        containerd_socket = self.root / "containerd.sock"
        config = self.root / "containerd.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.root}/containerd-root"\n'
            f'state = "{self.root}/containerd-state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{containerd_socket}"\n'
            f'[ttrpc]\n  address = "{containerd_socket}.ttrpc"\n'
            '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
        )
        self._containerd = self._daemon("containerd", ["containerd", "--config", str(config)])
        self._wait(lambda: containerd_socket.is_socket(), "containerd", timeout)
        daemon_json = self.root / "daemon.json"
        daemon_json.write_text("{}\n")
        self._dockerd = self._daemon(
            "dockerd",
            [
                "dockerd",
                f"--config-file={daemon_json}",
                f"--containerd={containerd_socket}",
                f"--data-root={self.root}/data",
                f"--exec-root={self.root}/exec",
                f"--pidfile={self.root}/dockerd.pid",
                f"--host={self.host}",
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
            ],
        )
        self._wait(self.ping, "dockerd", timeout)

    def _daemon(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        with log:
            return subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _wait(self, ready: object, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(ready) and ready():
                return
            for process in (self._containerd, self._dockerd):
                if process is not None and process.poll() is not None:
                    raise EngineError(f"{name} exited: {self.log_tail(name)}")
            time.sleep(0.1)
        raise EngineError(f"{name} not ready after {timeout}s: {self.log_tail(name)}")

    def ping(self) -> bool:
        try:
            connection = _UnixHTTPConnection(str(self.socket), timeout=2)
            connection.request("GET", "/_ping")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.root / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, check=check
        )

    def build_test_image(self) -> str:
        """`devjobs.test/busybox:1`: busybox-static and its applets, imported from a tar."""
        rootfs = self.root / "rootfs.tar"
        with tarfile.open(rootfs, "w") as tar:
            for folder in ("bin", "tmp", "etc", "work"):
                info = tarfile.TarInfo(folder)
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if folder == "tmp" else 0o755
                tar.addfile(info)
            tar.add(BUSYBOX, "bin/busybox")
            for applet in APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
            passwd = b"root:x:0:0:root:/:/bin/sh\n"
            entry = tarfile.TarInfo("etc/passwd")
            entry.size = len(passwd)
            tar.addfile(entry, io.BytesIO(passwd))
        done = subprocess.run(
            ["docker", "import", str(rootfs), TEST_IMAGE],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise EngineError(f"docker import failed: {done.stderr.strip()}")
        return TEST_IMAGE

    def stop(self) -> None:
        """Remove every container, stop dockerd then containerd, unmount, delete."""
        if self._dockerd is not None and self.ping():
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        for process in (self._dockerd, self._containerd):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._kill_leftover_shims()
        for mount in reversed(self.mounts()):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def mounts(self) -> list[str]:
        """Mount points under this engine's directory, in the order they were made."""
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(self.root) or point.startswith(f"{self.root}/"):
                points.append(point)
        return points

    def _kill_leftover_shims(self) -> None:
        """containerd-shim processes outlive containerd by design; ours are found by
        their `-address` pointing into this engine's directory."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                cmdline
                and b"containerd-shim" in cmdline[0]
                and any(str(self.root).encode() in part for part in cmdline)
            ):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
