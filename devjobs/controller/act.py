"""Executing the decided actions: the only place the controller writes to the cluster.

Each action is idempotent on its own, so a crash between two of them is repaired by the
next reconcile: Jobs are server-side applied under deterministic names, deletions ignore
`404`, conditions go through `status.write_conditions` (merge by type, JSON patch guarded
by the resourceVersion), the Manual request is removed only while it still holds the value
that was acted on, and Events have deterministic names (`409` means already recorded).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
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
from devjobs.errors import DevjobsError
from devjobs.runner import environment as envmod
from devjobs.runner.conditions import is_devjobs_type, merge_conditions
from devjobs.runner.kubeapi import FIELD_MANAGER, Kube, KubeError
from devjobs.runner.status import write_conditions

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


def execute(
    kube: Kube,
    env: envmod.Environment,
    actions: Sequence[Action],
    counters: Counters | None = None,
    reporting: Reporting | None = None,
) -> None:
    """Run `actions` in order; the first failure raises (KubeError or DevjobsError) and the
    rest wait for the retry, which decides again from what is then observed."""
    counters = counters if counters is not None else Counters()
    for action in actions:
        if isinstance(action, CreateJob):
            kube.apply(action.manifest)
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
            if action.remove:
                wrote = replace_conditions(kube, env, action.conditions, action.remove)
            else:
                wrote = write_conditions(kube.api_client, env.namespace, env.name,
                                         action.conditions)  # fmt: skip
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


def replace_conditions(
    kube: Kube,
    env: envmod.Environment,
    desired: Sequence[Mapping[str, Any]],
    remove: Sequence[str],
    *,
    max_attempts: int = 5,
) -> bool:
    """`status.write_conditions`, except that the condition types in `remove` are dropped
    too (`merge_conditions` only adds and replaces: it keeps every type it is not given).
    Same guard: a JSON patch of `/status/conditions` carrying the resourceVersion read, so
    a concurrent write (Catalyst's) is refused with 409 and the read-merge-write repeats.
    Only devjobs' own types (`is_devjobs_type`) are ever removed."""
    gone = {t for t in remove if is_devjobs_type(t)}
    for attempt in range(1, max_attempts + 1):
        obj = kube.get(env_path(env))
        if obj is None:
            raise DevjobsError(env.ref, "not found: cannot write its conditions")
        status = obj.get("status") if isinstance(obj.get("status"), Mapping) else None
        current = list((status or {}).get("conditions") or [])
        kept = [c for c in current if str(c.get("type", "")) not in gone]
        merged = merge_conditions(kept, desired, now=datetime.now(UTC))
        if merged is None:
            if len(kept) == len(current):
                return False
            merged = kept
        patch: list[dict[str, Any]] = [
            {"op": "replace", "path": "/metadata/resourceVersion",
             "value": obj["metadata"]["resourceVersion"]},
            {"op": "add", "path": "/status/conditions", "value": merged}
            if status is not None
            else {"op": "add", "path": "/status", "value": {"conditions": merged}},
        ]  # fmt: skip
        try:
            kube.request("PATCH", env_path(env) + "/status", {"fieldManager": FIELD_MANAGER},
                         patch, content_type="application/json-patch+json")  # fmt: skip
            return True
        except KubeError as error:
            if error.status != 409:
                raise
        time.sleep(min(0.05 * 2**attempt, 1.0))
    raise DevjobsError(env.ref, f"status not written: changed during {max_attempts} attempts")


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
