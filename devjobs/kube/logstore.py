"""Job log tails that outlive their pods: one ConfigMap per job, owned by the Environment.

Public API:
    save_log_tail(api_client, namespace, environment, job_key, container_logs, *,
                  max_bytes=DEFAULT_MAX_BYTES) -> bool        (False: already saved as is)
    read_log_tail(api_client, namespace, environment_name, job_key) -> dict[str, str]
    fetch_log_tails(api_client, namespace, pod, *, max_bytes=DEFAULT_MAX_BYTES)
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
logs and deleting the Environment removes them. Data keys are `<container>.log`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from devjobs.errors import DevjobsError

DEFAULT_MAX_BYTES = 64 * 1024
"""Per container: enough for a test report's summary and stack traces."""
MAX_DATA_BYTES = 768 * 1024
"""All containers of one job together; the API server refuses objects over 1 MiB."""
KEY_SUFFIX = ".log"
LABEL_COMPONENT = "devjobs.dev/component"
ANNOTATION_JOB_KEY = "devjobs.dev/job-key"
ANNOTATION_ENVIRONMENT = "devjobs.dev/environment"

_SUBDOMAIN_PART = re.compile(r"[^a-z0-9-]+")
_KEY_INVALID = re.compile(r"[^-._a-zA-Z0-9]+")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def configmap_name(environment_name: str, job_key: str) -> str:
    """`devjobs-log-<env>-<source>-<job>-<hash>`, a valid object name of at most 253
    characters; the hash of the exact (environment, job key) keeps it unique."""
    digest = hashlib.sha256(f"{environment_name}\0{job_key}".encode()).hexdigest()[:10]
    readable = _SUBDOMAIN_PART.sub("-", f"{environment_name}-{job_key}".lower()).strip("-")
    prefix = f"devjobs-log-{readable}"[: 253 - len(digest) - 1].rstrip("-")
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
    if meta.get("namespace") not in (None, namespace):
        raise DevjobsError(
            f"environments/{meta.get('namespace')}/{env_name}",
            f"cannot own a ConfigMap in another namespace ({namespace})",
        )
    if "/" not in job_key:
        raise DevjobsError("log store", f"job key {job_key!r} is not source/job")
    source, job = job_key.split("/", 1)
    per_container = min(max_bytes, MAX_DATA_BYTES // max(1, len(container_logs)))
    data = {
        data_key(name): tail_text(text, per_container)
        for name, text in sorted(container_logs.items())
    }
    labels = {"app.kubernetes.io/managed-by": "devjobs", LABEL_COMPONENT: "log-tail"}
    for label, value in (
        ("devjobs.dev/environment", env_name),
        ("devjobs.dev/source", source),
        ("devjobs.dev/job", job),
    ):
        if len(value) <= 63 and _LABEL_VALUE.match(value):
            labels[label] = value
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(env_name, job_key),
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_JOB_KEY: job_key, ANNOTATION_ENVIRONMENT: env_name},
            "ownerReferences": [
                {
                    "apiVersion": environment.get("apiVersion", ""),
                    "kind": environment.get("kind", ""),
                    "name": env_name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": data,
    }


def save_log_tail(
    api_client: Any,
    namespace: str,
    environment: Mapping[str, Any],
    job_key: str,
    container_logs: Mapping[str, str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bool:
    """Create or replace the job's log ConfigMap; True when it wrote, False when the
    stored one already had exactly this content (a reconcile repeating itself)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    body = log_configmap(namespace, environment, job_key, container_logs, max_bytes=max_bytes)
    name = body["metadata"]["name"]
    place = f"configmaps/{namespace}/{name}"
    core = client.CoreV1Api(api_client)
    for _ in range(5):
        try:
            current = api_client.sanitize_for_serialization(
                core.read_namespaced_config_map(name, namespace)
            )
        except ApiException as err:
            if err.status != 404:
                raise _error(place, "read", err) from None
            try:
                core.create_namespaced_config_map(
                    namespace, client.V1ConfigMap.model_validate(body)
                )
                return True
            except ApiException as err:
                if err.status != 409:  # created meanwhile: compare and replace
                    raise _error(place, "create", err) from None
                continue
        if _same(current, body):
            return False
        replacement = json.loads(json.dumps(body))
        replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            core.replace_namespaced_config_map(
                name, namespace, client.V1ConfigMap.model_validate(replacement)
            )
            return True
        except ApiException as err:
            if err.status != 409:
                raise _error(place, "replace", err) from None
    raise DevjobsError(place, "log tail not saved: the ConfigMap kept changing")


def read_log_tail(
    api_client: Any, namespace: str, environment_name: str, job_key: str
) -> dict[str, str]:
    """Container name -> saved log tail; empty when nothing was saved for that job."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = configmap_name(environment_name, job_key)
    try:
        cm = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return {}
        raise _error(f"configmaps/{namespace}/{name}", "read", err) from None
    return {key.removesuffix(KEY_SUFFIX): value for key, value in sorted((cm.data or {}).items())}


def fetch_log_tails(
    api_client: Any,
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
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    started = _started_containers(pod)
    names = [
        c["name"]
        for field in ("initContainers", "containers")
        for c in spec.get(field) or []
        if c.get("name") in started and (only is None or c.get("name") in only)
    ]
    lines = max(100, max_bytes // 40)  # server-side cut first; bytes are bounded below
    logs: dict[str, str] = {}
    for container in names:
        try:
            # Raw bytes: a log is not necessarily UTF-8, and one bad byte must not lose it.
            response: Any = core.read_namespaced_pod_log(
                name, namespace, container=container, tail_lines=lines, _preload_content=False
            )
        except ApiException as err:
            if err.status in (400, 404):  # not started (yet), or pod gone
                continue
            raise _error(
                f"pods/{namespace}/{name}", f"read logs of container {container} of", err
            ) from None
        raw = getattr(response, "data", response)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        logs[container] = tail_text(text, max_bytes)
    return logs


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


def _error(place: str, verb: str, err: Any) -> DevjobsError:
    try:
        message = json.loads(err.body or "").get("message") or err.reason
    except (ValueError, AttributeError):
        message = err.reason
    if err.status == 403:
        return DevjobsError(place, f"forbidden: cannot {verb} it: {message}")
    return DevjobsError(place, f"cannot {verb} it: {err.status} {message}")
