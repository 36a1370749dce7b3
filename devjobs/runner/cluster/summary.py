"""What `devjobs run` prints at the end of a cluster run, and `devjobs status`'s table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TextIO

from devjobs.kube.jobstate import JobState, Phase
from devjobs.kube.render import RenderedJob


def print_summary(
    jobs: Sequence[RenderedJob],
    states: Mapping[str, JobState],
    out: TextIO,
    init_states: Mapping[str, JobState] | None = None,
) -> int:
    """The summary table (Jobs, then InitContainer jobs); 1 when any did not succeed."""
    rows = [("JOB", "STATE", "REASON", "EXIT", "DURATION")]
    failed = False
    listed: list[tuple[str, JobState | None]] = [(j.key, states.get(j.name)) for j in jobs]
    listed += [(s.key, s) for s in (init_states or {}).values()]
    for key, state in listed:
        if state is None:
            rows.append((key, "Unknown", "", "", ""))
            failed = True
            continue
        failed = failed or state.phase is not Phase.SUCCEEDED
        rows.append(
            (
                key,
                state.phase.value,
                state.reason,
                "" if state.exit_code is None else str(state.exit_code),
                duration(state),
            )
        )
    out.write(format_table(rows))
    out.flush()
    return 1 if failed else 0


def duration(state: JobState) -> str:
    if state.started is None:
        return ""
    if state.finished is None:
        return "-"
    return f"{(state.finished - state.started).total_seconds():.0f}s"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n"
        for row in rows
    )
