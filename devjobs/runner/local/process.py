"""Child processes that can always be stopped completely, and the process backend.

Every step runs in its own session (`start_new_session`), so its process group holds
everything it started: stopping a step is `killpg` (SIGTERM, then SIGKILL after a grace
period), and once the step's main process exits, whatever it left in the background is
killed too, so a run leaves no process behind and no stray writer keeps its output open.
Ctrl-C from a terminal reaches only devjobs (the children are in other sessions); devjobs
then stops them itself and reports them as cancelled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from devjobs.resolver.models import JobConfig

GRACE_SECONDS = 3.0
"""How long a stopped step may take to exit after SIGTERM before it gets SIGKILL."""

OutputSink = Callable[[str, str], None]
"""Receives `(label, line)` for every line a step prints, without the newline."""

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


class Step:
    """One running command in its own process group, its output pumped line by line."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        label: str,
        sink: OutputSink,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.label = label
        self._sink = sink
        self._popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self._popen.pid
        self._reader = threading.Thread(target=self._pump, name=f"output {label}", daemon=True)
        self._reader.start()
        self._killer: threading.Timer | None = None

    def _pump(self) -> None:
        assert self._popen.stdout is not None
        with self._popen.stdout as stream:
            for raw in stream:
                self._sink(self.label, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (negative: killed by that signal), None when `timeout` passed."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM to the whole group now, SIGKILL after `grace`; safe from any thread."""
        self._signal(signal.SIGTERM)
        if self._killer is None:
            self._killer = threading.Timer(grace, self._signal, (signal.SIGKILL,))
            self._killer.daemon = True
            self._killer.start()

    def finish(self) -> None:
        """After the main process exited: kill what it left behind, drain the output."""
        self._signal(signal.SIGKILL)
        if self._killer is not None:
            self._killer.cancel()
        self._reader.join()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self.pid, sig)


def start_step(
    argv: Sequence[str],
    *,
    label: str,
    sink: OutputSink,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Step | int:
    """Start `argv`; the exit code a shell would give when it cannot (127 not found,
    126 not executable), after telling `sink` why."""
    try:
        return Step(argv, label=label, sink=sink, cwd=cwd, env=env)
    except FileNotFoundError:
        sink(label, f"devjobs: command not found: {argv[0]}")
        return EXIT_NOT_FOUND
    except (PermissionError, OSError) as error:
        sink(label, f"devjobs: cannot run {argv[0]}: {error.strerror or error}")
        return EXIT_NOT_EXECUTABLE


class Sandbox:
    """Where the steps of one job run; the process backend's is the checkout directory."""

    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        self._cwd = cwd
        self._env = dict(env)
        self._steps: list[Step] = []
        self._lock = threading.Lock()
        self._stopped = False

    def start(self, argv: Sequence[str], label: str, sink: OutputSink) -> Step | int:
        with self._lock:
            if self._stopped:
                return -int(signal.SIGTERM)
            step = start_step(argv, label=label, sink=sink, cwd=self._cwd, env=self._env)
            if isinstance(step, Step):
                self._steps.append(step)
            return step

    def stop(self) -> None:
        """Stop every step of this job, now and for good (from any thread)."""
        with self._lock:
            self._stopped = True
            steps = list(self._steps)
        for step in steps:
            step.stop()

    def close(self) -> None:
        """Nothing to clean up: each step's group is killed when the step ends."""


class ProcessBackend:
    """Each command a child process of devjobs, in the source's checkout directory."""

    name = "process"
    setup_once_per_source = True
    """The checkout is shared and kept between jobs, so setup steps (installing
    dependencies into it) run once per source, not once per job."""

    def __init__(self, base_env: Mapping[str, str] | None = None) -> None:
        self._base_env = dict(os.environ if base_env is None else base_env)

    def check(self, jobs: Sequence[JobConfig]) -> None:
        """Any job can run as a process (whether its commands exist shows when it runs)."""

    def sandbox(self, job: JobConfig, checkout: Path) -> Sandbox:
        return Sandbox(working_directory(job, checkout), {**self._base_env, **local_env(job)})

    def warnings(self, jobs: Sequence[JobConfig]) -> list[str]:
        if not jobs:
            return []
        images = sorted({job.image for job in jobs if job.image})
        used = f"the job images ({', '.join(images)}) are not used" if images else "no container"
        return [
            f"the process backend runs commands directly on this machine, {used} "
            "(--backend docker runs each job in its image)"
        ]


def working_directory(job: JobConfig, checkout: Path) -> Path:
    """Where a job runs without a container: its `working_dir` when that is a path
    inside the checkout (relative, or absolute under it), else the checkout itself (the
    in-container path such as `/workspaces/app` has no meaning on this machine)."""
    wanted = Path(job.working_dir)
    if not wanted.is_absolute():
        candidate = checkout / wanted
    elif wanted.is_relative_to(checkout):
        candidate = wanted
    else:
        return checkout
    return candidate if candidate.is_dir() else checkout


def local_env(job: JobConfig) -> dict[str, str]:
    """The variables a local run sets for `job`: its values. Those it would take from the
    cluster's Secrets and ConfigMaps are not there; `cluster_only` says which."""
    return {name: value for name, value in job.env.items() if isinstance(value, str)}


def cluster_only(jobs: Iterable[JobConfig]) -> list[str]:
    """A warning per variable and envFrom entry a local run cannot give a job: they come
    from Secrets and ConfigMaps in the environment's namespace, which a local run never
    reads. Said, not dropped silently: the job may well fail without them."""
    lines = []
    for job in jobs:
        lines += [
            f"job {job.key}: {name} comes from {value.describe()}, which a local run "
            "does not read: devjobs leaves it unset"
            for name, value in job.env.items()
            if not isinstance(value, str)
        ]
        lines += [
            f"job {job.key}: envFrom names {source.describe()}, which a local run does not "
            "read: devjobs sets none of its variables"
            for source in job.env_from
        ]
    return lines
