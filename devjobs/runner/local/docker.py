"""The docker backend: each job in a container of its image, through the `docker` CLI.

A job gets one container, kept alive by the same idle shell loop the devcontainer
reference uses, with the checkout bind-mounted at the job's `workingDir` and its `env`
set. Its setup steps and command then run in it with `docker exec`, one after another,
and `parallel` entries as concurrent execs: exactly the cluster runner's "setup steps
first in the same container". Stopping a job (timeout, Ctrl-C, --fail-fast) and ending
it normally both remove the container (`docker rm -f`), which kills everything in it.
Containers carry the label `app.kubernetes.io/managed-by=devjobs`, so a leftover is
easy to find. The engine is the one the docker CLI itself would use (`DOCKER_HOST`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from devjobs.errors import DevjobsError
from devjobs.kube.vocabulary import LABEL_JOB, LABEL_SOURCE, MANAGED_SELECTOR
from devjobs.resolver.models import JobConfig
from devjobs.runner.local.process import OutputSink, Step, local_env, start_step

MANAGED_BY_LABEL = MANAGED_SELECTOR
DEFAULT_SOCKET = "/var/run/docker.sock"
KEEP_ALIVE = 'trap "exit 0" TERM; while sleep 1000 & wait $!; do :; done'
"""The container's main process: idles until the container is removed (from the
devcontainer reference's `overrideCommand`); needs /bin/sh and sleep in the image."""


def engine_reachable(env: Mapping[str, str] | None = None, timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers, at `DOCKER_HOST` or the default socket, and
    the `docker` CLI is installed to talk to it."""
    env = os.environ if env is None else env
    if shutil.which("docker", path=env.get("PATH")) is None:
        return False
    host = env.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if host.startswith("unix://"):
        return _ping_unix(host.removeprefix("unix://"), timeout)
    try:  # tcp:// or ssh://: let the CLI speak the protocol
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            env=dict(env),
            capture_output=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _ping_unix(path: str, timeout: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status_line.startswith(b"HTTP/1.") and b" 200 " in status_line + b" "


class DockerSandbox:
    """One job's container: created on `open`, removed on `close` or `stop`."""

    def __init__(
        self, *, name: str, job: JobConfig, image: str, checkout: Path, network: str | None
    ) -> None:
        self.name = name
        self._job = job
        self._image = image
        self._checkout = checkout
        self._network = network
        self._user = [] if os.getuid() == 0 else ["--user", f"{os.getuid()}:{os.getgid()}"]
        self._lock = threading.Lock()
        self._steps: list[Step] = []
        self._created = False
        self._stopped = False

    def open(self) -> None:
        """Create and start the container; DevjobsError (the engine's words) when it
        cannot be."""
        argv = [
            "docker", "run", "--detach", "--name", self.name,
            "--label", MANAGED_BY_LABEL,
            "--label", f"{LABEL_SOURCE}={self._job.source}",
            "--label", f"{LABEL_JOB}={self._job.name}",
            "--volume", f"{self._checkout}:{self._job.working_dir}",
            "--workdir", self._job.working_dir,
            *self._user,
            *(["--network", self._network] if self._network else []),
            *_env_flags(local_env(self._job)),
            "--entrypoint", "/bin/sh",
            self._image, "-c", KEEP_ALIVE,
        ]  # fmt: skip
        with self._lock:
            if self._stopped:
                return
            self._created = True
        done = subprocess.run(argv, capture_output=True, text=True, start_new_session=True)
        if self._stopped:  # stopped while creating: the removal may have come too early
            self._remove()
        if done.returncode != 0:
            self._remove()
            reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
            raise DevjobsError(f"image {self._image}", f"cannot start a container: {reason}")

    def start(self, argv: Sequence[str], label: str, sink: OutputSink) -> Step | int:
        with self._lock:
            if self._stopped:
                return -15
            step = start_step(
                ["docker", "exec", "--workdir", self._job.working_dir, *self._user,
                 self.name, *argv],
                label=label,
                sink=sink,
            )  # fmt: skip
            if isinstance(step, Step):
                self._steps.append(step)
            return step

    def stop(self) -> None:
        """Remove the container now (killing every process in it); from any thread."""
        with self._lock:
            self._stopped = True
            created = self._created
            steps = list(self._steps)
        if created:
            self._remove()
        for step in steps:
            step.stop()

    def close(self) -> None:
        if self._created:
            self._remove()

    def _remove(self) -> None:
        subprocess.run(
            ["docker", "rm", "--force", self.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


class DockerBackend:
    """Each job in its own container of the job's image (or `--image` when it has none)."""

    name = "docker"
    setup_once_per_source = False
    """Each container starts from its image, so every job runs its setup steps itself,
    as on the cluster."""

    def __init__(self, *, default_image: str | None = None, network: str | None = None) -> None:
        self._default_image = default_image
        self._network = network

    def check(self, jobs: Sequence[JobConfig]) -> None:
        """Every job needs an image: its own, or `--image` for the build image."""
        missing = [job.key for job in jobs if job.image is None]
        if missing and self._default_image is None:
            raise DevjobsError(
                "--image",
                "jobs without an image run in the environment's build image, which a local "
                f"run does not have: pass --image IMAGE ({', '.join(missing)})",
            )

    def sandbox(self, job: JobConfig, checkout: Path) -> DockerSandbox:
        image = job.image or self._default_image
        assert image is not None  # check() ran first
        sandbox = DockerSandbox(
            name=container_name(job),
            job=job,
            image=image,
            checkout=checkout.resolve(),
            network=self._network,
        )
        sandbox.open()
        return sandbox

    def warnings(self, jobs: Sequence[JobConfig]) -> list[str]:
        return []


def container_name(job: JobConfig) -> str:
    """`devjobs-SOURCE-JOB-RANDOM`: recognisable in `docker ps`, unique per run."""
    base = re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"{job.source}-{job.name}")[:100]
    return f"devjobs-{base}-{secrets.token_hex(3)}"


def _env_flags(env: Mapping[str, str]) -> list[str]:
    flags: list[str] = []
    for key, value in env.items():
        flags += ["--env", f"{key}={value}"]
    return flags
