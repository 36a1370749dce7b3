"""Executing the decided actions: the only place the controller writes to the cluster.

Each action is idempotent on its own, so a crash between two of them is repaired by the
next reconcile: Jobs are server-side applied under deterministic names, deletions ignore
`404`, conditions go through `status.write_conditions` (merge by type, JSON patch guarded
by the resourceVersion), the Manual request is removed only while it still holds the value
that was acted on, and Events have deterministic names (`409` means already recorded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from devjobs.controller.decide import (
    Action,
    ApplyWorkload,
    ClearManualRequest,
    CreateJob,
    DeleteJob,
    RecordEvent,
    SaveLogTail,
    WriteConditions,
)
from devjobs.controller.observe import RUN_ANNOTATION
from devjobs.kube.client import FIELD_MANAGER, Kube, KubeError
from devjobs.kube.status import write_conditions
from devjobs.resolver import environment as envmod

if TYPE_CHECKING:
    from devjobs.controller.report import Reporting

log = logging.getLogger("devjobs.controller")
COMPONENT = "devjobs-controller"


@dataclass
class Counters:
    """Writes by kind, for logs and the bench (an idle controller keeps them still)."""

    writes: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.writes[kind] = self.writes.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.writes.values())


@dataclass
class RecentCreates:
    """Jobs this process created that its Job informer has not shown yet.

    `reconcile` creates every desired Job it does not observe; when the informer lags
    behind a create, the next round (another object's event) would apply the same Job
    again (2 of 1002 applies in bench/controller_200.py). The shell remembers each
    created Job by namespace, name and spec hash until the informer shows it, or for
    `ttl` seconds (a Job deleted before it was ever seen is created again after that),
    and holds back a create it remembers. The pure core stays as it is."""

    ttl: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _made: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def created(self, namespace: str, action: CreateJob) -> None:
        with self._lock:
            self._made[(namespace, action.name)] = (_spec_hash(action), self.clock())

    def seen(self, namespace: str, names: Collection[str]) -> None:
        """The informer shows these Jobs of `namespace`: nothing to remember for them."""
        with self._lock:
            for name in names:
                self._made.pop((namespace, name), None)

    def holds(self, namespace: str, action: CreateJob) -> bool:
        """Whether `action` creates a Job just created and not yet seen (same spec)."""
        with self._lock:
            made = self._made.get((namespace, action.name))
            if made is None:
                return False
            if self.clock() - made[1] > self.ttl:
                del self._made[(namespace, action.name)]
                return False
            return made[0] == _spec_hash(action)

    def __len__(self) -> int:
        return len(self._made)


def _spec_hash(action: CreateJob) -> str:
    from devjobs.kube.vocabulary import ANNOTATION_SPEC_HASH

    meta = action.manifest.get("metadata") or {}
    return str((meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH, ""))


def execute(
    kube: Kube,
    env: envmod.Environment,
    actions: Sequence[Action],
    counters: Counters | None = None,
    reporting: Reporting | None = None,
    recent: RecentCreates | None = None,
) -> None:
    """Run `actions` in order; the first failure raises (KubeError or DevjobsError) and the
    rest wait for the retry, which decides again from what is then observed. A CreateJob
    that `recent` holds (created, not yet seen by the informer) is not applied again."""
    counters = counters if counters is not None else Counters()
    for action in actions:
        if isinstance(action, CreateJob):
            if recent is not None and recent.holds(env.namespace, action):
                log.debug("%s: Job %s created already, not yet seen", env.ref, action.name)
                continue
            kube.apply(action.manifest)
            if recent is not None:
                recent.created(env.namespace, action)
            counters.add("job-create")
            log.info("%s: created Job %s", env.ref, action.name)
        elif isinstance(action, DeleteJob):
            path = f"/apis/batch/v1/namespaces/{quote(env.namespace)}/jobs/{quote(action.name)}"
            kube.delete(path, propagation="Background")
            counters.add("job-delete")
            log.info("%s: cancelled Job %s (%s)", env.ref, action.name, action.reason)
        elif isinstance(action, ApplyWorkload):
            kube.apply(action.patch, field_manager=FIELD_MANAGER)
            counters.add("workload-apply")
            log.info("%s: applied init containers to %s", env.ref, action.patch["metadata"]["name"])
        elif isinstance(action, WriteConditions):
            wrote = write_conditions(
                kube, env.namespace, env.name, action.conditions,
                remove=action.remove, field_manager=FIELD_MANAGER,
            )  # fmt: skip
            if wrote:
                counters.add("status")
                log.info("%s: conditions written", env.ref)
        elif isinstance(action, SaveLogTail):
            if reporting is not None and reporting.save_log_tail(kube, env, action):
                counters.add("log-tail")
        elif isinstance(action, ClearManualRequest):
            if clear_request(kube, env, action.value):
                counters.add("request-clear")
        elif isinstance(action, RecordEvent) and record_event(kube, env, action):
            counters.add("event")


def env_path(env: envmod.Environment) -> str:
    return (
        f"/apis/{envmod.API_VERSION}/namespaces/{quote(env.namespace)}/"
        f"{envmod.PLURAL}/{quote(env.name)}"
    )


def clear_request(kube: Kube, env: envmod.Environment, value: str) -> bool:
    """Remove `devjobs.dev/run` if it still says `value`; False when someone changed it
    meanwhile (the newer request is left for the next reconcile)."""
    pointer = "/metadata/annotations/" + RUN_ANNOTATION.replace("~", "~0").replace("/", "~1")
    patch = [{"op": "test", "path": pointer, "value": value}, {"op": "remove", "path": pointer}]
    try:
        kube.request(
            "PATCH",
            env_path(env),
            {"fieldManager": COMPONENT},
            patch,
            content_type="application/json-patch+json",
        )
    except KubeError as error:
        if error.status in (404, 409, 422):
            return False
        raise
    return True


def record_event(kube: Kube, env: envmod.Environment, event: RecordEvent) -> bool:
    """A core/v1 Event on the Environment; False when it was already recorded."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event.name, "namespace": env.namespace},
        "involvedObject": {
            "apiVersion": envmod.API_VERSION,
            "kind": envmod.KIND,
            "name": env.name,
            "namespace": env.namespace,
            "uid": env.uid,
        },
        "reason": event.reason,
        "message": event.message,
        "type": event.type,
        "source": {"component": COMPONENT},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.request("POST", f"/api/v1/namespaces/{quote(env.namespace)}/events", body=body)
    except KubeError as error:
        if error.status == 409:
            return False
        raise
    log.info("%s: event %s: %s", env.ref, event.reason, event.message)
    return True
