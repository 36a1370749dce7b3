"""The local runner: a job plan's jobs on this machine, no cluster needed.

- `schedule`: which jobs run, in which order (pure).
- `results`, `report`: what came out, and its JSON / JUnit forms (pure).
- `process`, `docker`: the two backends (child processes; containers via the docker CLI).
- `executor`: runs a schedule on a backend, with timeouts, retries, cancellation.
- `display`: what a person watching sees.

`run_plan` wires them together for `devjobs run --local`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rich.console import Console

from devjobs.errors import DevjobsError
from devjobs.resolver.models import JobPlan
from devjobs.runner.local.display import LiveDisplay, PlainDisplay
from devjobs.runner.local.docker import DockerBackend, engine_reachable
from devjobs.runner.local.executor import Backend, LocalRun, RunOptions
from devjobs.runner.local.process import ProcessBackend, cluster_only
from devjobs.runner.local.report import result_document
from devjobs.runner.local.results import RunResult
from devjobs.runner.local.schedule import Stage

__all__ = ["choose_backend", "run_plan", "RunOptions"]


def choose_backend(choice: str, *, image: str | None = None, network: str | None = None) -> Backend:
    """`docker`, `process`, or `auto`: docker when an engine answers, else process."""
    if choice == "process":
        return ProcessBackend()
    reachable = engine_reachable()
    if choice == "docker" and not reachable:
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise DevjobsError("--backend docker", f"no Docker engine answers at {host}")
    if reachable:
        return DockerBackend(default_image=image, network=network)
    print("devjobs: warning: no Docker engine answers: using the process backend",
          file=sys.stderr)  # fmt: skip
    return ProcessBackend()


def run_plan(
    plan: JobPlan,
    stages: Sequence[Stage],
    checkouts: Mapping[str, Path],
    backend: Backend,
    options: RunOptions,
    *,
    json_output: bool = False,
    install_signal_handlers: Callable[[Callable[[], None]], None] | None = None,
) -> tuple[RunResult, str | None]:
    """Run `stages` with a display on stdout (stderr with `json_output`, which is then
    returned as the document to print). A TTY gets the live display."""
    stream = sys.stderr if json_output else sys.stdout
    single_source = len({job.source for job in plan.jobs}) <= 1
    jobs = [unit.job for stage in stages for unit in stage.units]
    # Setup steps too: on the process backend they run with their own variables.
    every = {job.key: job for s in stages for unit in s.units for job in (*unit.setup, unit.job)}
    warnings = [*cluster_only(every.values()), *backend.warnings(jobs)]
    for warning in warnings:
        print(f"devjobs: warning: {warning}", file=sys.stderr)
    display: LiveDisplay | PlainDisplay
    if stream.isatty():
        display = LiveDisplay(Console(file=stream), jobs, single_source=single_source)
    else:
        display = PlainDisplay(stream, single_source=single_source)
    run = LocalRun(stages, checkouts, backend, display, options, labels=display.label)
    if install_signal_handlers is not None:
        install_signal_handlers(run.interrupt)
    try:
        result = dataclasses.replace(run.run(), warnings=(*plan.warnings, *warnings))
    finally:
        if isinstance(display, LiveDisplay):
            display.stop()
    display.close(result)
    report = json.dumps(result_document(result), indent=2) if json_output else None
    return result, report
