"""Following the workload's rollout after `devjobs run --trigger PreDeploy` patched in the
InitContainer jobs: their results come from the workload's pods (`jobstate`'s reading,
the controller's too), and they are reported like Jobs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from devjobs.kube import vocabulary as v
from devjobs.kube.client import Kube, collection_path
from devjobs.kube.jobstate import (
    InitJob,
    InitResult,
    JobState,
    Phase,
    declared_state,
    init_container_results,
    init_runs,
)
from devjobs.kube.reflector import Reflector

if TYPE_CHECKING:
    from devjobs.runner.cluster.report import JobReports, Reporter

ROLLOUT_TIMEOUT_SECONDS = 600.0
INIT_STATE_PREFIX = "init:"
"""Names of InitContainer jobs' states among the Job-name-keyed states of a run (they
have no Job: their logs come with `logs_from`)."""


def init_state_name(job: InitJob) -> str:
    """The key of an InitContainer job among the Job-name-keyed states of a run."""
    return f"{INIT_STATE_PREFIX}{job.key}"


def rollout_pending(job: InitJob, patch: Mapping[str, Any] | None) -> JobState:
    workload = patch["metadata"]["name"] if patch else "the workload"
    message = f"runs as an init container of {workload}"
    return declared_state(job.source, job.job, Phase.PENDING, "Pending", message, job.commit)


def follow_init_jobs(
    kube: Kube,
    deployment: Mapping[str, Any],
    jobs: Sequence[InitJob],
    reporter: Reporter,
    statuses: JobReports | None,
    job_states: Mapping[str, JobState],
    out: TextIO,
    timeout: float = ROLLOUT_TIMEOUT_SECONDS,
) -> dict[str, JobState]:
    """Follow the rollout (`follow_rollout`) and report the InitContainer jobs like Jobs:
    their conditions with the Jobs' in the aggregate, log tails of their containers from
    the pod that decided them, GitHub statuses. Returns `init_state_name` -> state."""
    names = {init_state_name(j): j for j in jobs}

    def on_change(results: Mapping[str, InitResult], pods: Mapping[str, Mapping[str, Any]]) -> None:
        states = {n: results[j.key].state for n, j in names.items() if j.key in results}
        logs_from = {
            n: (pods[results[j.key].pod], j.containers)
            for n, j in names.items()
            if j.key in results and results[j.key].pod in pods
        }
        pending = {n: rollout_pending(j, deployment) for n, j in names.items()}
        reporter.report({**job_states, **pending, **states}, logs_from=logs_from)
        if statuses is not None:
            statuses.changed(states)

    results = follow_rollout(kube, deployment, jobs, out, timeout=timeout, on_change=on_change)
    final = {n: results[j.key].state for n, j in names.items() if j.key in results}
    reporter.report({**job_states, **final}, final=True)
    if statuses is not None:
        statuses.changed(final)
    return final


def follow_rollout(
    kube: Kube,
    deployment: Mapping[str, Any],
    jobs: Sequence[InitJob],
    out: TextIO,
    timeout: float = ROLLOUT_TIMEOUT_SECONDS,
    on_change: Callable[[Mapping[str, InitResult], Mapping[str, Mapping[str, Any]]], None]
    | None = None,
) -> dict[str, InitResult]:
    """Follow the workload's rollout after the PreDeploy patch (`deployment`, as applied):
    watch its pods and read their devjobs init containers with
    `jobstate.init_container_results` until every InitContainer job has a result: Failed
    as soon as its container (or one before it) fails - the pod is held back -,
    Succeeded when all of its containers exited 0. On timeout the jobs without a result
    are Failed (`DeadlineExceeded`). Returns job key -> result."""
    meta = deployment["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    wanted = [
        c
        for c in deployment["spec"]["template"]["spec"].get("initContainers") or []
        if str(c.get("name", "")).startswith(v.INIT_PREFIX)
    ]
    match = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={value}" for k, value in sorted(match.items())) or None
    changed = threading.Event()
    stop = threading.Event()
    pods_reflector = Reflector(
        kube, collection_path("v1", "Pod", namespace), label_selector=selector, watch_seconds=60
    )
    pods_reflector.add_listener(lambda *_: changed.set())
    pods_reflector.start(stop)
    deadline = time.monotonic() + timeout
    results: dict[str, InitResult] = {}
    said: set[str] = set()

    def update() -> bool:
        nonlocal results
        pods = {str(p["metadata"]["name"]): p for p in pods_reflector.items()}
        now = init_container_results(jobs, init_runs(list(pods.values()), v.INIT_PREFIX),
                                     wanted, name)  # fmt: skip
        if now != results:
            results = now
            for key, result in sorted(now.items()):
                if key in said:
                    continue
                said.add(key)
                if result.state.reason == "Failed":
                    what = result.state.message.split(f" pod {result.pod} ", 1)[-1]
                    out.write(
                        f"devjobs: deployment/{name}: init container {result.container} of pod "
                        f"{result.pod} {what}: the workload is held back\n"
                    )
                elif result.state.reason == "Blocked":
                    out.write(f"devjobs: {key}: blocked: {result.state.message}\n")
            out.flush()
            if on_change is not None:
                on_change(results, pods)
        return all(j.key in results for j in jobs)

    try:
        while time.monotonic() < deadline:
            changed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            changed.clear()
            if pods_reflector.synced.is_set() and update():
                break
    finally:
        stop.set()
    if all(j.key in results for j in jobs):
        if not any(r.state.phase is Phase.FAILED for r in results.values()):
            count = len(wanted)
            out.write(f"devjobs: deployment/{name}: {count} devjobs init containers succeeded\n")
            out.flush()
        return results
    out.write(f"devjobs: deployment/{name}: rollout not done after {timeout:.0f}s\n")
    out.flush()
    for job in jobs:
        if job.key not in results:
            message = f"{name}'s rollout did not run it within {timeout:.0f}s"
            state = declared_state(
                job.source, job.job, Phase.FAILED, "DeadlineExceeded", message, job.commit
            )
            results[job.key] = InitResult(state, "")
    return results
