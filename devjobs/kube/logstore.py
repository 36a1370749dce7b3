"""Job log tails that outlive their pods: one ConfigMap per job, owned by the Environment.

Public API:
    save_log_tail(kube, namespace, environment, job_key, container_logs, *,
                  max_bytes=DEFAULT_MAX_BYTES) -> bool        (False: already saved as is)
    read_log_tail(kube, namespace, environment_name, job_key) -> dict[str, str]
    fetch_log_tails(kube, namespace, pod, *, max_bytes=DEFAULT_MAX_BYTES)
                  -> dict[str, str]                           container -> tail, from the kubelet
    log_configmap(namespace, environment, job_key, container_logs, *, max_bytes) -> dict
    configmap_name(environment_name, job_key) -> str
    tail_text(text, max_bytes) -> str

One ConfigMap per job rather than one per Environment: two jobs ending at once never
race on the same object, and each stays far below the 1 MiB object limit. The name is a
readable prefix plus a hash of (environment, job key), so it is deterministic and never
collides when names are long or contain dashes. The Environment is the owner (not the
Job; `controller` and `blockOwnerDeletion` as for the Jobs, see
`environment.Environment.owner_reference`), so deleting the Job and its pods keeps the
logs and deleting the Environment removes them; in a Catalyst target namespace, where
no owner reference can reach it, the record names the Environment's namespace instead
and goes with the target namespace. Data keys are `<container>.log`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from typing import Any

from devjobs.errors import DevjobsError
from devjobs.kube import naming
from devjobs.kube import vocabulary as v
from devjobs.kube.client import Kube, KubeError, collection_path, object_path
from devjobs.kube.masking import SecretsUnreadable, mask, secret_values

DEFAULT_MAX_BYTES = 64 * 1024
"""Per container: enough for a test report's summary and stack traces."""
MAX_DATA_BYTES = 768 * 1024
"""All containers of one job together; the API server refuses objects over 1 MiB."""
KEY_SUFFIX = ".log"

_SUBDOMAIN_PART = re.compile(r"[^a-z0-9-]+")
_KEY_INVALID = re.compile(r"[^-._a-zA-Z0-9]+")


def configmap_name(environment_name: str, job_key: str) -> str:
    """`devjobs-log-<env>-<source>-<job>-<hash>`, a valid object name of at most 253
    characters; the hash of the exact (environment, job key) keeps it unique."""
    digest = hashlib.sha256(f"{environment_name}\0{job_key}".encode()).hexdigest()[:10]
    readable = _SUBDOMAIN_PART.sub("-", f"{environment_name}-{job_key}".lower()).strip("-")
    prefix = f"{v.LOG_RECORD_PREFIX}{readable}"[: 253 - len(digest) - 1].rstrip("-")
    return f"{prefix}-{digest}"


def tail_text(text: str, max_bytes: int) -> str:
    """The last `max_bytes` UTF-8 bytes of `text`, cut at a line start when one is near,
    with a first line saying how much was dropped."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    marker_room = 64
    keep = data[len(data) - max(0, max_bytes - marker_room) :]
    newline = keep.find(b"\n")
    if 0 <= newline < len(keep) // 4:
        keep = keep[newline + 1 :]
    body = keep.decode(errors="ignore")
    dropped = len(data) - len(body.encode())
    return f"[devjobs: {dropped} earlier bytes not kept]\n{body}"


def data_key(container: str) -> str:
    """`<container>.log`: container names are DNS labels, so this is a valid ConfigMap
    key; anything else is made valid and given a hash so two names cannot collide."""
    key = f"{container}{KEY_SUFFIX}"
    if container and not _KEY_INVALID.search(container) and len(key) <= 253:
        return key
    digest = hashlib.sha256(container.encode()).hexdigest()[:8]
    safe = _KEY_INVALID.sub("_", container)[:200] or "container"
    return f"{safe}-{digest}{KEY_SUFFIX}"


def log_configmap(
    namespace: str,
    environment: Mapping[str, Any],
    job_key: str,
    container_logs: Mapping[str, str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """The ConfigMap for one job's log tails (pure). Each container gets `max_bytes`,
    less when many containers would exceed MAX_DATA_BYTES together."""
    meta = environment.get("metadata") or {}
    env_name, uid = meta.get("name"), meta.get("uid")
    if not env_name or not uid:
        raise DevjobsError("log store", "the Environment must have metadata.name and metadata.uid")
    owned = meta.get("namespace") in (None, namespace)
    if "/" not in job_key:
        raise DevjobsError("log store", f"job key {job_key!r} is not source/job")
    source, job = job_key.split("/", 1)
    per_container = min(max_bytes, MAX_DATA_BYTES // max(1, len(container_logs)))
    data = {
        data_key(name): tail_text(text, per_container)
        for name, text in sorted(container_logs.items())
    }
    labels = {v.LABEL_MANAGED_BY: v.MANAGED_BY, v.LABEL_COMPONENT: v.LOG_COMPONENT}
    for label, value in (
        (v.LABEL_ENVIRONMENT, env_name),
        (v.LABEL_SOURCE, source),
        (v.LABEL_JOB, job),
    ):
        if naming.is_label_value(value):
            labels[label] = value
    annotations = {v.ANNOTATION_JOB_KEY: job_key, v.ANNOTATION_ENVIRONMENT: env_name}
    owners: list[dict[str, Any]] = []
    if owned:
        owners.append(
            {
                "apiVersion": environment.get("apiVersion", ""),
                "kind": environment.get("kind", ""),
                "name": env_name,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        )
    else:
        # Owner references cannot cross namespaces: the Environment's namespace says
        # whose it is, and the operator's deletion of the target namespace removes it.
        annotations[v.ANNOTATION_ENVIRONMENT_NAMESPACE] = str(meta.get("namespace"))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(env_name, job_key),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owners,
        },
        "data": data,
    }


def save_log_tail(
    kube: Kube,
    namespace: str,
    environment: Mapping[str, Any],
    job_key: str,
    container_logs: Mapping[str, str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    job_name: str | None = None,
) -> bool:
    """Create or replace the job's log ConfigMap; True when it wrote, False when the
    stored one already had exactly this content (a reconcile repeating itself).
    `job_name`: the Job whose pod the logs are from (kept once per Job)."""
    body = log_configmap(namespace, environment, job_key, container_logs, max_bytes=max_bytes)
    if job_name:
        body["metadata"]["annotations"][v.ANNOTATION_LOG_JOB_NAME] = job_name
    name = body["metadata"]["name"]
    place = f"configmaps/{namespace}/{name}"
    path = object_path(body)
    for _ in range(5):
        try:
            current = kube.get(path)
        except KubeError as err:
            raise _error(place, "read", err) from None
        if current is None:
            try:
                kube.request("POST", collection_path("v1", "ConfigMap", namespace), body=body)
                return True
            except KubeError as err:
                if err.status != 409:  # created meanwhile: compare and replace
                    raise _error(place, "create", err) from None
                continue
        if _same(current, body):
            return False
        try:
            kube.request(
                "PATCH", path, body=_replacement(current, body),
                content_type="application/merge-patch+json",
            )  # fmt: skip
            return True
        except KubeError as err:
            if err.status != 409:
                raise _error(place, "replace", err) from None
    raise DevjobsError(place, "log tail not saved: the ConfigMap kept changing")


def read_log_tail(
    kube: Kube, namespace: str, environment_name: str, job_key: str
) -> dict[str, str]:
    """Container name -> saved log tail; empty when nothing was saved for that job."""
    name = configmap_name(environment_name, job_key)
    path = f"{collection_path('v1', 'ConfigMap', namespace)}/{name}"
    try:
        cm = kube.get(path)
    except KubeError as err:
        raise _error(f"configmaps/{namespace}/{name}", "read", err) from None
    data = (cm or {}).get("data") or {}
    return {key.removesuffix(KEY_SUFFIX): value for key, value in sorted(data.items())}


def fetch_log_tails(
    kube: Kube,
    namespace: str,
    pod: Mapping[str, Any],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    only: Collection[str] | None = None,
) -> dict[str, str]:
    """The tail of each (init) container's log of a pod (API JSON, with its status), read
    from the kubelet before the pod goes away; with `only`, of those containers only.
    Containers that never started (per the pod's status) have no entry: the API server
    would answer an empty log, not an error."""
    name = pod["metadata"]["name"]
    names = _containers_to_read(pod, only)
    lines = max(100, max_bytes // 40)  # server-side cut first; bytes are bounded below
    logs: dict[str, str] = {}
    for container in names:
        try:
            # Raw bytes: a log is not necessarily UTF-8, and one bad byte must not lose it.
            raw = kube.log_bytes(namespace, name, container, tail_lines=lines)
        except KubeError as err:
            if err.status in (400, 404):  # not started (yet), or pod gone
                continue
            raise _error(
                f"pods/{namespace}/{name}", f"read logs of container {container} of", err
            ) from None
        logs[container] = tail_text(raw.decode("utf-8", "replace"), max_bytes)
    return logs


def masked_log_tails(
    kube: Kube,
    namespace: str,
    pod: Mapping[str, Any],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    only: Collection[str] | None = None,
) -> dict[str, str]:
    """`fetch_log_tails` with the values of the Secrets the pod references masked
    (`masking`): what devjobs keeps. When one of them cannot be read, no log is kept,
    only a line saying why."""
    try:
        values = secret_values(kube, namespace, pod)
    except SecretsUnreadable as error:
        note = f"[devjobs: log not kept: {error}; its values could not be masked]\n"
        return {container: note for container in _containers_to_read(pod, only)}
    tails = fetch_log_tails(kube, namespace, pod, max_bytes=max_bytes, only=only)
    return {container: mask(text, values) for container, text in tails.items()}


def _containers_to_read(pod: Mapping[str, Any], only: Collection[str] | None) -> list[str]:
    """The pod's (init) containers that started, in pod order, of `only` when given."""
    spec = pod.get("spec") or {}
    started = _started_containers(pod)
    return [
        c["name"]
        for field in ("initContainers", "containers")
        for c in spec.get(field) or []
        if c.get("name") in started and (only is None or c.get("name") in only)
    ]


def _started_containers(pod: Mapping[str, Any]) -> set[str]:
    status = pod.get("status") or {}
    return {
        str(cs.get("name"))
        for field in ("initContainerStatuses", "containerStatuses")
        for cs in status.get(field) or []
        if {"running", "terminated"} & set(cs.get("state") or {})
        or "terminated" in (cs.get("lastState") or {})
    }


_OWNER_FIELDS = ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")


def _replacement(current: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch making `current` hold `body`'s data (keys it lacks removed), labels,
    annotations and owners; guarded by the resourceVersion read (a conflict is a 409).
    A patch, not a PUT: the controller's role may patch ConfigMaps, never update them."""
    data: dict[str, Any] = {key: None for key in current.get("data") or {}}
    data.update(body["data"])
    meta = body["metadata"]
    return {
        "metadata": {
            "resourceVersion": current["metadata"]["resourceVersion"],
            "labels": meta["labels"],
            "annotations": meta["annotations"],
            "ownerReferences": meta["ownerReferences"],
        },
        "data": data,
    }


def _same(current: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    cur, want = current.get("metadata") or {}, body["metadata"]
    refs = [
        {k: r.get(k) for k in _OWNER_FIELDS if k in r} for r in cur.get("ownerReferences") or []
    ]
    return (
        (current.get("data") or {}) == body["data"]
        and all((cur.get("labels") or {}).get(k) == v for k, v in want["labels"].items())
        and all((cur.get("annotations") or {}).get(k) == v for k, v in want["annotations"].items())
        and refs == want["ownerReferences"]
    )


def _error(place: str, verb: str, err: KubeError) -> DevjobsError:
    if err.status == 403:
        return DevjobsError(place, f"forbidden: cannot {verb} it: {err.message}")
    return DevjobsError(place, f"cannot {verb} it: {err.status} {err.message or err.reason}")
