"""What a person watching a local run sees: job output line by line, prefixed by its job,
job starts and ends, and a summary table.

Two renderings of the same events: `PlainDisplay`, one line per event, for pipes, files
and CI logs (and the tests); `LiveDisplay` on a terminal, the same lines scrolling above
a live panel of every job's state and time (rich's `Live`).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devjobs.resolver.models import JobConfig
from devjobs.runner.local.results import JobResult, JobStatus, RunResult, counts, display_key

STATUS_STYLE = {
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.SKIPPED: "dim",
}


def format_duration(seconds: float) -> str:
    """`0.42s`, `12.3s`, `2m05s`: short and still exact enough to compare."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def finished_line(result: JobResult) -> str:
    """`succeeded in 0.02s`, `failed (exit 3) in 1.00s: command exited with 3`."""
    exit_part = (
        f" (exit {result.exit_code})"
        if result.status == JobStatus.FAILED and (result.exit_code is not None)
        else ""
    )
    message = f": {result.message}" if result.message else ""
    return (
        f"{result.status.value}{exit_part} in {format_duration(result.duration_seconds)}{message}"
    )


def summary_table(result: RunResult, *, single_source: bool) -> Table:
    table = Table(title=None, box=None, pad_edge=False, header_style="bold")
    for column in ("JOB", "TRIGGER", "STATUS", "EXIT", "DURATION", "NOTE"):
        table.add_column(column, no_wrap=column != "NOTE")
    for job in result.jobs:
        table.add_row(
            display_key(job.source, job.name, single_source=single_source),
            job.trigger.value,
            Text(job.status.value, style=STATUS_STYLE[job.status]),
            "-" if job.exit_code is None else str(job.exit_code),
            "-" if job.status == JobStatus.SKIPPED else format_duration(job.duration_seconds),
            job.message,
        )
    return table


def summary_line(result: RunResult) -> str:
    """`2 succeeded, 1 failed in 3.10s` (statuses with no jobs left out)."""
    parts = [f"{n} {status.value}" for status, n in counts(result.jobs).items() if n]
    verdict = ", ".join(parts) or "no jobs"
    tail = " (interrupted)" if result.interrupted else ""
    return f"{verdict} in {format_duration(result.duration_seconds)}{tail}"


class PlainDisplay:
    """One line per event, written as soon as it happens."""

    def __init__(self, stream: IO[str], *, single_source: bool) -> None:
        self._stream = stream
        self._single = single_source
        self._lock = threading.Lock()

    def label(self, job: JobConfig) -> str:
        return display_key(job.source, job.name, single_source=self._single)

    def _write(self, label: str, text: str) -> None:
        with self._lock:
            self._stream.write(f"[{label}] {text}\n")
            self._stream.flush()

    def job_started(self, job: JobConfig, attempt: int) -> None:
        retry = "" if attempt == 1 else f" (attempt {attempt} of {job.retries + 1})"
        self._write(self.label(job), f"started{retry}: {job.trigger.value}")

    def output(self, label: str, line: str) -> None:
        self._write(label, line)

    def job_finished(self, result: JobResult) -> None:
        self._write(
            display_key(result.source, result.name, single_source=self._single),
            finished_line(result),
        )

    def close(self, result: RunResult) -> None:
        buffer = io.StringIO()
        console = Console(file=buffer, highlight=False, width=160, color_system=None)
        console.print(summary_table(result, single_source=self._single))
        table = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
        with self._lock:
            self._stream.write(f"\n{table}\n{summary_line(result)}\n")
            self._stream.flush()


class LiveDisplay:
    """On a terminal: output scrolls above a live panel of job states."""

    def __init__(self, console: Console, jobs: Sequence[JobConfig], *, single_source: bool):
        self._console = console
        self._single = single_source
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}
        self._finished: dict[str, JobResult] = {}
        self._order = [display_key(j.source, j.name, single_source=single_source) for j in jobs]
        self._live = Live(self, console=console, refresh_per_second=8, transient=True)
        self._live.start()

    def label(self, job: JobConfig) -> str:
        return display_key(job.source, job.name, single_source=self._single)

    def job_started(self, job: JobConfig, attempt: int) -> None:
        with self._lock:
            self._started[self.label(job)] = time.monotonic()
        if attempt > 1:
            self.output(self.label(job), f"retrying (attempt {attempt} of {job.retries + 1})")

    def output(self, label: str, line: str) -> None:
        text = Text(f"[{label}] ", style="cyan")
        text.append(line)
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def job_finished(self, result: JobResult) -> None:
        label = display_key(result.source, result.name, single_source=self._single)
        with self._lock:
            self._finished[label] = result
        text = Text(f"[{label}] ", style="cyan")
        text.append(finished_line(result), style=STATUS_STYLE[result.status])
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def __rich__(self) -> RenderableType:
        """The live panel: one row per job, waiting, running (with its time) or done."""
        now = time.monotonic()
        rows = []
        with self._lock:
            for label in dict.fromkeys([*self._order, *self._started]):
                done = self._finished.get(label)
                if done is not None:
                    state = Text(f"{done.status.value:<10}", style=STATUS_STYLE[done.status])
                    elapsed = format_duration(done.duration_seconds)
                elif label in self._started:
                    state = Text(f"{'running':<10}", style="bold blue")
                    elapsed = format_duration(now - self._started[label])
                else:
                    state = Text(f"{'waiting':<10}", style="dim")
                    elapsed = ""
                rows.append(Text.assemble(state, " ", label, " ", (elapsed, "dim")))
        return Group(Text("devjobs run --local", style="bold"), *rows)

    def stop(self) -> None:
        """End the live panel (idempotent), leaving the printed lines."""
        self._live.stop()

    def close(self, result: RunResult) -> None:
        self.stop()
        self._console.print()
        self._console.print(summary_table(result, single_source=self._single))
        self._console.print(summary_line(result))
