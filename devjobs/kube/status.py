"""Writing devjobs' conditions to a Catalyst Environment's status (the imperative shell).

Public API:
    write_conditions(kube, namespace, name, desired, *, remove=(),
                     field_manager=FIELD_MANAGER, now=None, max_attempts=5,
                     after_read=None) -> bool

How it cannot clobber Catalyst's conditions: it reads the Environment, merges `desired`
into the conditions it read (`merge_conditions`: other types untouched), and sends a JSON
patch to the status subresource that also sets `/metadata/resourceVersion` to the version
read. The patched object then carries that resourceVersion, which the API server checks
as an update precondition: if anyone (Catalyst's operator included) changed the object in
between, the write is refused with 409 Conflict, nothing is written, and the
read-merge-write starts again. The list sent is therefore always "exactly what was
there, plus ours". (A JSON patch `test` op on the resourceVersion also refuses, but with
a 422 indistinguishable from a real validation error, so it cannot be retried safely.)
`remove` drops condition types in the same guarded patch - only devjobs' own
(`conditions.is_devjobs_type`): a job no longer in the plan loses its condition, and a
type of Catalyst's (or anyone's) named there is ignored. This is the one way devjobs
writes conditions, for `devjobs run` and the controller alike.
Server-side apply was the alternative; it was not chosen because an apply that omits one
of devjobs' earlier conditions deletes it, so every caller would have to send all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from devjobs.catalyst import API_VERSION, GROUP
from devjobs.errors import DevjobsError
from devjobs.kube.client import Kube, KubeError
from devjobs.kube.conditions import is_devjobs_type, merge_conditions
from devjobs.kube.vocabulary import FIELD_MANAGER
from devjobs.resolver.environment import PLURAL

JSON_PATCH = "application/json-patch+json"


def write_conditions(
    kube: Kube,
    namespace: str,
    name: str,
    desired: Sequence[Mapping[str, Any]],
    *,
    remove: Sequence[str] = (),
    field_manager: str = FIELD_MANAGER,
    now: datetime | None = None,
    max_attempts: int = 5,
    after_read: Callable[[Mapping[str, Any]], None] | None = None,
) -> bool:
    """Merge `desired` into the Environment's `status.conditions` and drop the types in
    `remove` that are devjobs' (`is_devjobs_type`; others are never removed); True when
    it wrote, False when all was already so (no request but the read). Retries when the
    Environment changed between the read and the write (409 Conflict).
    `after_read` is called with each object read, before the write (lets tests provoke a
    real conflict). Raises DevjobsError on RBAC denial, a missing Environment, or when
    every attempt conflicted."""
    path = f"/apis/{API_VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"
    place = f"environments/{namespace}/{name}"
    gone = {t for t in remove if is_devjobs_type(t)}
    for attempt in range(1, max_attempts + 1):
        try:
            env: dict[str, Any] = kube.request("GET", path)
        except KubeError as err:
            raise _api_error(place, "get", err) from None
        status = env.get("status") if isinstance(env.get("status"), Mapping) else None
        existing = list((status or {}).get("conditions") or [])
        kept = [c for c in existing if str(_type(c)) not in gone]
        merged = merge_conditions(kept, desired, now=now or datetime.now(UTC))
        if merged is None:
            if len(kept) == len(existing):
                return False
            merged = kept
        if after_read is not None:
            after_read(env)
        patch: list[dict[str, Any]] = [
            {
                "op": "replace",
                "path": "/metadata/resourceVersion",
                "value": env["metadata"]["resourceVersion"],
            },
            {"op": "add", "path": "/status/conditions", "value": merged}
            if status is not None
            else {"op": "add", "path": "/status", "value": {"conditions": merged}},
        ]
        try:
            query = {"fieldManager": field_manager}
            kube.request("PATCH", f"{path}/status", query, patch, content_type=JSON_PATCH)
            return True
        except KubeError as err:
            if err.status != 409:
                raise _api_error(place, "patch status of", err) from None
        time.sleep(min(0.05 * 2**attempt, 1.0))
    raise DevjobsError(
        place,
        f"status not written: the Environment changed during each of {max_attempts} attempts",
    )


def _type(condition: Any) -> Any:
    return condition.get("type") if isinstance(condition, Mapping) else None


def _api_error(place: str, verb: str, err: KubeError) -> DevjobsError:
    message = err.message or err.reason or str(err.status)
    if err.status == 403:
        return DevjobsError(
            place,
            f"forbidden: {message} (devjobs needs `get` on environments.{GROUP} and "
            f"`patch` on environments/status in namespace {place.split('/')[1]})",
        )
    if err.status == 404:
        return DevjobsError(place, f"not found: cannot {verb} it ({message})")
    if err.status == 401:
        return DevjobsError(place, f"unauthorized: the credentials were refused ({message})")
    return DevjobsError(place, f"cannot {verb} it: {err.status} {message}")
