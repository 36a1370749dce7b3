"""Runs a schedule on a backend: the imperative shell around `schedule` and `results`.

Lifecycle points run one after another; a point starts only when every job of the
earlier ones succeeded (the later ones are reported `skipped`, as the cluster never
reaches them). Within a point up to `parallelism` jobs run at once, each in a worker
thread that starts the job's steps (setup steps, then its command, or its parallel
entries at once) in a backend sandbox and waits for them with the job's deadline.

Setup jobs: on the docker backend every job runs its setup steps in its own container,
and the setup jobs also run as their own PreDeploy jobs, as on the cluster. On the
process backend the checkout is shared, so each setup job runs once per run: the first
job that needs it (or its own PreDeploy slot, whichever comes first) runs it as a job of
its own; everyone after reuses that result, and a failed setup job fails the jobs that
need it without running them.

Stopping: `interrupt()` (Ctrl-C, SIGTERM; safe in a signal handler) and `--fail-fast`
stop every running sandbox; a job's timeout stops its own. All of them end in
`finish()` of every step, so no process or container outlives the run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devjobs.errors import DevjobsError
from devjobs.resolver.models import JobConfig
from devjobs.runner.local.process import OutputSink, Step
from devjobs.runner.local.results import JobResult, JobStatus, RunResult
from devjobs.runner.local.schedule import Stage, Unit

TAIL_LINES = 50
"""Lines of output kept per job for the reports."""


class Sandbox(Protocol):
    def start(self, argv: Sequence[str], label: str, sink: OutputSink) -> Step | int: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class Backend(Protocol):
    name: str
    setup_once_per_source: bool

    def check(self, jobs: Sequence[JobConfig]) -> None: ...
    def sandbox(self, job: JobConfig, checkout: Path) -> Sandbox: ...
    def warnings(self, jobs: Sequence[JobConfig]) -> list[str]: ...


class Events(Protocol):
    """What the display is told; called from worker threads."""

    def job_started(self, job: JobConfig, attempt: int) -> None: ...
    def output(self, label: str, line: str) -> None: ...
    def job_finished(self, result: JobResult) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    parallelism: int = 1
    fail_fast: bool = False
    timeout_seconds: float | None = None
    """Overrides every job's own `timeout_seconds` when set."""


@dataclass
class _Attempt:
    status: JobStatus
    exit_code: int | None = None
    message: str = ""


class LocalRun:
    """One run of a schedule; `run()` once, `interrupt()` from anywhere."""

    def __init__(
        self,
        stages: Sequence[Stage],
        checkouts: Mapping[str, Path],
        backend: Backend,
        events: Events,
        options: RunOptions = RunOptions(),
        labels: Callable[[JobConfig], str] = lambda job: job.key,
    ) -> None:
        self._stages = tuple(stages)
        self._checkouts = dict(checkouts)
        self._backend = backend
        self._events = events
        self._options = options
        self._label = labels
        self._interrupted = threading.Event()
        self._stopping = ""
        """Why the whole run is stopping ("interrupted", "--fail-fast"); "" while not."""
        self._lock = threading.Lock()
        self._live: set[Sandbox] = set()
        self._done: dict[str, JobResult] = {}
        self._once_locks: dict[str, threading.Lock] = {}

    def interrupt(self) -> None:
        """Ask the run to stop (Ctrl-C): only sets a flag, so a signal handler may call it."""
        self._interrupted.set()

    def run(self) -> RunResult:
        started = time.monotonic()
        jobs = [job for stage in self._stages for unit in stage.units for job in _all(unit)]
        for job in jobs:
            if job.source not in self._checkouts:
                raise DevjobsError(f"job {job.key}", f"no checkout for source {job.source!r}")
        self._backend.check(jobs)
        blocked_by = ""
        for stage in self._stages:
            if self._stopping or blocked_by:
                reason = self._stopping or blocked_by
                for unit in stage.units:
                    self._record(self._not_started(unit.job, reason))
                continue
            self._run_stage(stage)
            if any(self._done[u.job.key].status != JobStatus.SUCCEEDED for u in stage.units):
                blocked_by = f"{stage.trigger.value} did not succeed"
        return RunResult(
            backend=self._backend.name,
            jobs=tuple(self._in_schedule_order()),
            duration_seconds=time.monotonic() - started,
            interrupted=self._interrupted.is_set(),
        )

    def _run_stage(self, stage: Stage) -> None:
        with ThreadPoolExecutor(max_workers=max(1, self._options.parallelism)) as pool:
            pending: set[Future[JobResult]] = {
                pool.submit(self._run_unit, unit) for unit in stage.units
            }
            while pending:
                try:
                    _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    self._interrupted.set()
                if self._interrupted.is_set() and self._stopping != "interrupted":
                    self._stop_all("interrupted")

    def _stop_all(self, reason: str) -> None:
        with self._lock:
            if not self._stopping:
                self._stopping = reason
            live = list(self._live)
        for sandbox in live:
            sandbox.stop()

    # --- one job -----------------------------------------------------------------------

    def _run_unit(self, unit: Unit) -> JobResult:
        """Run a job once per run (a setup job may be asked for by several jobs)."""
        key = unit.job.key
        with self._lock:
            once = self._once_locks.setdefault(key, threading.Lock())
        with once:
            if key in self._done:
                return self._done[key]
            result = self._run_job(unit)
            self._record(result)
            return result

    def _run_job(self, unit: Unit) -> JobResult:
        job = unit.job
        if self._stopping:
            return self._not_started(job, self._stopping)
        share_setup = self._backend.setup_once_per_source
        needs = [*unit.needs, *(self._setup_units(unit) if share_setup else ())]
        for need in needs:
            need_result = self._run_unit(need)
            if need_result.status != JobStatus.SUCCEEDED:
                if need_result.status != JobStatus.FAILED and self._stopping:
                    return self._not_started(job, self._stopping)
                return JobResult(
                    source=job.source,
                    name=job.name,
                    trigger=job.trigger,
                    status=JobStatus.FAILED,
                    message=f"setup job {need.job.name} {need_result.status.value}",
                )
        steps = [job] if share_setup else [*unit.setup, job]
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        started = time.monotonic()
        attempt = _Attempt(JobStatus.FAILED)
        attempts = 0
        for attempts in range(1, job.retries + 2):  # noqa: B007 (the count is reported)
            if self._stopping:
                break
            self._events.job_started(job, attempts)
            attempt = self._attempt(job, steps, tail)
            if attempt.status != JobStatus.FAILED:
                break
        result = JobResult(
            source=job.source,
            name=job.name,
            trigger=job.trigger,
            status=attempt.status,
            exit_code=attempt.exit_code,
            duration_seconds=time.monotonic() - started,
            attempts=attempts,
            message=attempt.message,
            output_tail=tuple(tail),
        )
        self._events.job_finished(result)
        if result.status == JobStatus.FAILED and self._options.fail_fast:
            self._stop_all("--fail-fast")
        return result

    def _attempt(self, job: JobConfig, steps: Sequence[JobConfig], tail: deque[str]) -> _Attempt:
        """Start a sandbox, run the steps in it in order until one fails, remove it."""
        label = self._label(job)

        def sink(step_label: str, line: str) -> None:
            tail.append(line)
            self._events.output(step_label, line)

        timeout = self._options.timeout_seconds or job.timeout_seconds
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            sandbox = self._backend.sandbox(job, self._checkouts[job.source])
        except DevjobsError as error:
            sink(label, f"devjobs: {error}")
            return _Attempt(JobStatus.FAILED, None, str(error))
        with self._lock:
            self._live.add(sandbox)
            stopping = self._stopping
        if stopping:
            sandbox.stop()
        timed_out = threading.Event()
        try:
            for step in steps:
                is_setup = step is not job
                if is_setup:
                    sink(label, f"devjobs: setup step {step.name}")
                code = self._run_command(sandbox, step, label, sink, deadline, timed_out)
                if timed_out.is_set():
                    return _Attempt(JobStatus.CANCELLED, None, f"timed out after {timeout:g}s")
                if self._stopping:
                    return _Attempt(JobStatus.CANCELLED, None, _cancel_message(self._stopping))
                if code != 0:
                    what = f"setup step {step.name}" if is_setup else "command"
                    return _Attempt(JobStatus.FAILED, code, f"{what} exited with {code}")
            return _Attempt(JobStatus.SUCCEEDED, 0)
        finally:
            with self._lock:
                self._live.discard(sandbox)
            sandbox.close()

    def _run_command(
        self,
        sandbox: Sandbox,
        step: JobConfig,
        label: str,
        sink: OutputSink,
        deadline: float | None,
        timed_out: threading.Event,
    ) -> int:
        """Start the step's command (or all its parallel entries) and wait for all of it;
        the first failing entry's exit code, in entry order, or 0."""
        if step.command is not None:
            entries = {label: step.command}
        else:
            assert step.parallel is not None
            entries = {f"{label}:{key}": argv for key, argv in step.parallel.items()}
        started = [sandbox.start(argv, entry_label, sink) for entry_label, argv in entries.items()]
        codes: list[int] = []
        for item in started:
            if isinstance(item, int):
                codes.append(item)
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            code = item.wait(remaining)
            if code is None:
                timed_out.set()
                sandbox.stop()
                code = item.wait()
            assert code is not None
            item.finish()
            codes.append(code)
        return next((code for code in codes if code != 0), 0)

    def _setup_units(self, unit: Unit) -> list[Unit]:
        """The setup jobs of `unit` as jobs of their own (process backend): the schedule's
        units for them when it has them (with the earlier setup jobs they need)."""
        by_key = {u.job.key: u for stage in self._stages for u in stage.units}
        return [by_key.get(job.key, Unit(job)) for job in unit.setup]

    # --- bookkeeping -------------------------------------------------------------------

    def _not_started(self, job: JobConfig, reason: str) -> JobResult:
        """A job that never ran: cancelled by Ctrl-C, else skipped."""
        interrupted = reason == "interrupted"
        return JobResult(
            source=job.source,
            name=job.name,
            trigger=job.trigger,
            status=JobStatus.CANCELLED if interrupted else JobStatus.SKIPPED,
            message=f"not started: {_cancel_message(reason)}" if interrupted else reason,
        )

    def _record(self, result: JobResult) -> None:
        with self._lock:
            self._done.setdefault(result.key, result)

    def _in_schedule_order(self) -> list[JobResult]:
        """Plan order, each setup job that ran on its own just before its first user."""
        keys: dict[str, None] = {}
        for stage in self._stages:
            for unit in stage.units:
                if self._backend.setup_once_per_source:
                    keys.update(dict.fromkeys(s.key for s in unit.setup if s.key in self._done))
                keys[unit.job.key] = None
        return [self._done[key] for key in keys if key in self._done]


def _all(unit: Unit) -> list[JobConfig]:
    return [*unit.setup, unit.job]


def _cancel_message(reason: str) -> str:
    return "interrupted" if reason == "interrupted" else f"cancelled by {reason}"
