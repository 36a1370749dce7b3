"""Follow a set of Jobs to the end: watch Jobs and pods, stream container logs prefixed
by job, and return each job's final `JobState`.

Jobs and pods are watched by two `kube.reflector.Reflector`s (list, watch, resume after
any error, an API server restart included; re-list on `410 Gone`), and the states are
computed from their stores, so an event seen twice changes nothing. Log streams that
break are re-opened skipping the lines already printed: nothing is lost or duplicated.
A followed Job that disappears before finishing is Cancelled.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from devjobs.kube.client import Kube, KubeError, collection_path
from devjobs.kube.jobstate import JobState, Phase, job_state
from devjobs.kube.reflector import Reflector
from devjobs.kube.vocabulary import JOB_NAME_LABEL

LOG_GRACE_SECONDS = 15.0
"""After the last job ends, how long log streams may take to drain."""


@dataclass(frozen=True)
class Target:
    """A Job to follow: its object name, `source/job` key and the prefix for its lines."""

    name: str
    key: str
    prefix: str
    main_containers: tuple[str, ...]


@dataclass
class Follower:
    kube: Kube
    namespace: str
    selector: str
    """Label selector matching the followed Jobs and their pods."""
    targets: Sequence[Target]
    out: TextIO
    logs: bool = True
    on_change: Callable[[dict[str, JobState]], None] | None = None
    """Called (from the following thread) whenever some job's state changes."""

    _events: queue.Queue[tuple[str, Any, Any]] = field(default_factory=queue.Queue)
    _stop: threading.Event = field(default_factory=threading.Event)
    _jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    _streams: set[tuple[str, str]] = field(default_factory=set)
    _active_streams: int = 0
    _states: dict[str, JobState] = field(default_factory=dict)
    _seen_job: set[str] = field(default_factory=set)

    def run(self) -> dict[str, JobState]:
        """Follow until every target has finished; returns {Job name: final state}."""
        reflectors = [
            Reflector(
                self.kube,
                collection_path(api, kind, self.namespace),
                label_selector=self.selector,
                watch_seconds=30,
            )  # fmt: skip
            for api, kind in (("batch/v1", "Job"), ("v1", "Pod"))
        ]
        jobs, pods = reflectors
        for reflector in reflectors:
            reflector.add_listener(lambda *_: self._events.put(("change", None, None)))
            reflector.start(self._stop)
        by_name = {t.name: t for t in self.targets}
        # Applied before following: one missing from the first list was deleted.
        self._seen_job.update(by_name)
        finished_at: float | None = None
        try:
            while True:
                if finished_at is not None and (
                    self._active_streams == 0 or time.monotonic() - finished_at > LOG_GRACE_SECONDS
                ):
                    break
                try:
                    kind, a, b = self._events.get(timeout=0.5)
                except queue.Empty:
                    kind, a, b = "tick", None, None
                if kind == "log":
                    self.out.write(f"[{a}] {b}\n")
                    self.out.flush()
                    continue
                if kind == "log-end":
                    self._active_streams -= 1
                    continue
                if not (jobs.synced.is_set() and pods.synced.is_set()):
                    continue
                self._jobs = {_name(o): o for o in jobs.items()}
                self._pods = {_name(o): o for o in pods.items()}
                self._update(by_name)
                if self.logs:
                    self._start_streams(by_name)
                if finished_at is None and all(
                    t.name in self._states and self._states[t.name].phase.finished
                    for t in self.targets
                ):
                    finished_at = time.monotonic()
        finally:
            self._stop.set()
        return dict(self._states)

    # --- state ---------------------------------------------------------------------

    def _update(self, by_name: Mapping[str, Target]) -> None:
        changed = False
        for name, target in by_name.items():
            previous = self._states.get(name)
            if previous is not None and previous.phase.finished:
                continue  # final: a later deletion (TTL, cleanup) changes nothing
            job = self._jobs.get(name)
            if job is None:
                if name in self._seen_job:
                    state = _cancelled(target, previous)
                else:
                    continue  # not created yet (or not seen yet)
            else:
                self._seen_job.add(name)
                pods = [p for p in self._pods.values() if _labels(p).get(JOB_NAME_LABEL) == name]
                state = job_state(job, pods)
            if state != previous:
                self._states[name] = state
                changed = True
                if previous is None or _rank(state.phase) > _rank(previous.phase):
                    self._say(target, state)  # progress only: no Running -> Pending flapping
        if changed and self.on_change is not None:
            self.on_change(dict(self._states))

    def _say(self, target: Target, state: JobState) -> None:
        text = state.phase.value
        if state.phase is Phase.FAILED or state.phase is Phase.CANCELLED:
            text += f" ({state.reason}): {state.message}"
        elif state.phase is Phase.SUCCEEDED and state.started and state.finished:
            text += f" in {(state.finished - state.started).total_seconds():.0f}s"
        self.out.write(f"[{target.prefix}] devjobs: {target.key} {text}\n")
        self.out.flush()

    # --- logs ----------------------------------------------------------------------

    def _start_streams(self, by_name: Mapping[str, Target]) -> None:
        for pod in self._pods.values():
            target = by_name.get(_labels(pod).get(JOB_NAME_LABEL, ""))
            if target is None:
                continue
            status = pod.get("status") or {}
            for field_name in ("initContainerStatuses", "containerStatuses"):
                for cs in status.get(field_name) or []:
                    state = cs.get("state") or {}
                    if "running" not in state and "terminated" not in state:
                        continue
                    key = (_name(pod), cs["name"])
                    if key in self._streams:
                        continue
                    self._streams.add(key)
                    self._active_streams += 1
                    prefix = target.prefix
                    if cs["name"] not in target.main_containers or len(target.main_containers) > 1:
                        prefix = f"{target.prefix}/{cs['name']}"
                    thread = threading.Thread(
                        target=self._stream, args=(key[0], key[1], prefix), daemon=True
                    )
                    thread.start()

    def _stream(self, pod: str, container: str, prefix: str) -> None:
        printed = 0
        try:
            for attempt in range(20):
                seen = 0
                try:
                    for line in self.kube.log_lines(self.namespace, pod, container, follow=True):
                        seen += 1
                        if seen > printed:
                            printed = seen
                            self._events.put(("log", prefix, line))
                        if self._stop.is_set():
                            return
                except KubeError as error:
                    if error.status in (400, 404):
                        return  # pod gone, or the container never ran
                if self._stop.is_set() or not self._still_running(pod, container):
                    return
                time.sleep(min(0.2 * (attempt + 1), 2.0))  # the stream broke: re-open
        finally:
            self._events.put(("log-end", None, None))

    def _still_running(self, pod: str, container: str) -> bool:
        try:
            obj = self.kube.get(f"/api/v1/namespaces/{self.namespace}/pods/{pod}")
        except KubeError:
            return True
        if obj is None:
            return False
        status = obj.get("status") or {}
        for field_name in ("initContainerStatuses", "containerStatuses"):
            for cs in status.get(field_name) or []:
                if cs.get("name") == container:
                    return "terminated" not in (cs.get("state") or {})
        return False


def _rank(phase: Phase) -> int:
    return {Phase.PENDING: 0, Phase.RUNNING: 1}.get(phase, 2)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _cancelled(target: Target, previous: JobState | None) -> JobState:
    source, _, job = target.key.partition("/")
    return JobState(
        source=source,
        job=job,
        phase=Phase.CANCELLED,
        reason="Cancelled",
        exit_code=None,
        started=previous.started if previous else None,
        finished=None,
        message="the Job was deleted before it finished",
        commit=previous.commit if previous else None,
        job_name=target.name,
    )
