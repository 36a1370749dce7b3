"""A thin, counted REST layer over the official client's ApiClient, speaking raw JSON.

The runner reads Jobs, pods and Environments as plain dicts (what `jobstate` and the
renderer use), applies with server-side apply, and streams watches and logs line by
line; the generated typed models would only be converted back. Every HTTP request goes
through `request()`, so `requests` counts them (the bench reports it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devjobs import catalyst
from devjobs.errors import DevjobsError
from devjobs.kube.vocabulary import FIELD_MANAGER

_PLURALS = {
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs"),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "Secret"): ("/api/v1", "secrets"),
    (catalyst.API_VERSION, "Environment"): (f"/apis/{catalyst.API_VERSION}", "environments"),
    (catalyst.API_VERSION, "Project"): (f"/apis/{catalyst.API_VERSION}", "projects"),
}


class KubeError(Exception):
    """A non-2xx answer: `status` (0 for a connection failure), the Status `reason` and
    the server's message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    try:
        prefix, plural = _PLURALS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"no path known for {api_version} {kind}") from None
    return f"{prefix}/namespaces/{quote(namespace)}/{plural}"


def object_path(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    base = collection_path(obj["apiVersion"], obj["kind"], meta["namespace"])
    return f"{base}/{quote(meta['name'])}"


@dataclass
class Kube:
    """One API client and its request counter."""

    api_client: Any
    requests: int = 0

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float | None] | None = 30,
        stream: bool = False,
    ) -> Any:
        """JSON in, JSON out (or the raw urllib3 response when `stream`)."""
        from kubernetes.client.exceptions import ApiException

        params = [(k, _query_value(v)) for k, v in (query or {}).items()]
        headers = {"Accept": "application/json", "Content-Type": content_type}
        payload = body
        if body is not None and "json" not in content_type:
            # The REST layer JSON-encodes bodies itself for JSON types only.
            payload = json.dumps(body, separators=(",", ":"))
        method_, url, header_params, body_, post = self.api_client.param_serialize(
            method,
            path,
            query_params=params,
            header_params=headers,
            body=payload,
            auth_settings=["BearerToken"],
        )
        self.requests += 1
        try:
            response = self.api_client.call_api(
                method_, url, header_params, body_, post, _request_timeout=timeout
            )
        except ApiException as error:
            raise KubeError(error.status or 0, error.reason or "", str(error.body or "")) from None
        except OSError as error:  # connection refused/reset, timeouts (urllib3 errors)
            raise KubeError(0, type(error).__name__, str(error)) from None
        except Exception as error:
            if type(error).__module__.startswith("urllib3"):
                raise KubeError(0, type(error).__name__, str(error)) from None
            raise
        if not 200 <= response.status <= 299:
            data = response.read()
            raise _error(response.status, response.reason or "", data)
        if stream:
            return response.response
        data = response.read()
        return json.loads(data) if data else None

    # --- verbs ---------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            result: dict[str, Any] = self.request("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return result

    def list(self, path: str, selector: str | None = None) -> dict[str, Any]:
        query: dict[str, str | int | bool] = {}
        if selector:
            query["labelSelector"] = selector
        result: dict[str, Any] = self.request("GET", path, query)
        return result

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        dry_run: bool = False,
        force: bool = True,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """Server-side apply `obj` (field manager `devjobs`)."""
        query: dict[str, str | int | bool] = {"fieldManager": field_manager, "force": force}
        query["fieldValidation"] = "Strict"
        if dry_run:
            query["dryRun"] = "All"
        result: dict[str, Any] = self.request(
            "PATCH", object_path(obj), query, obj, content_type="application/apply-patch+yaml"
        )
        return result

    def delete(self, path: str, propagation: str = "Background") -> None:
        try:
            self.request("DELETE", path, body={"propagationPolicy": propagation})
        except KubeError as error:
            if error.status != 404:
                raise

    def watch(
        self,
        path: str,
        resource_version: str,
        selector: str | None = None,
        timeout_seconds: int = 60,
    ) -> Iterator[dict[str, Any]]:
        """Watch events from `resource_version` on, bookmarks included; ends when the
        server closes the watch. Raises KubeError(410) when the version is too old."""
        query: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_seconds,
        }
        if selector:
            query["labelSelector"] = selector
        response = self.request("GET", path, query, timeout=(10, timeout_seconds + 15), stream=True)
        try:
            for line in iter_lines(response):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeError(
                        int(status.get("code") or 0),
                        str(status.get("reason") or ""),
                        str(status.get("message") or ""),
                    )
                yield event
        finally:
            response.release_conn()

    def log_bytes(self, namespace: str, pod: str, container: str, tail_lines: int) -> bytes:
        """The last `tail_lines` lines of a container's log, as the kubelet has them."""
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log"
        query: dict[str, str | int | bool] = {"container": container, "tailLines": tail_lines}
        response = self.request("GET", path, query, timeout=(10, 60), stream=True)
        try:
            data: bytes = response.read()
        finally:
            response.release_conn()
        return data

    def log_lines(self, namespace: str, pod: str, container: str, follow: bool) -> Iterator[str]:
        """A container's log, line by line (following it while it runs when `follow`)."""
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log"
        query: dict[str, str | int | bool] = {"container": container}
        if follow:
            query["follow"] = True
        response = self.request("GET", path, query, timeout=(10, None), stream=True)
        try:
            for line in iter_lines(response):
                yield line.decode("utf-8", errors="replace")
        finally:
            response.release_conn()


def iter_lines(response: Any) -> Iterator[bytes]:
    """Lines of a streamed body; a last line without a newline is still a line. A stream
    that breaks (the API server restarting) raises KubeError(0): callers re-open it."""
    pending = b""
    chunks = response.stream(4096, decode_content=True)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except Exception as error:
            if isinstance(error, OSError) or type(error).__module__.startswith("urllib3"):
                raise KubeError(0, type(error).__name__, f"stream broken: {error}") from None
            raise
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error(status: int, reason: str, data: bytes | str | None) -> KubeError:
    message = ""
    kube_reason = reason
    try:
        body = json.loads(data or b"{}")
        message = str(body.get("message") or "")
        kube_reason = str(body.get("reason") or reason)
    except (ValueError, AttributeError):
        message = (data.decode() if isinstance(data, bytes) else str(data or ""))[:500]
    return KubeError(status, kube_reason, message)


def connect(kubeconfig: Path | None = None, context: str | None = None) -> Kube:
    """A client from a kubeconfig (`--kubeconfig`, else $KUBECONFIG, else ~/.kube/config)
    or, inside a pod, the in-cluster service account."""
    import os

    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        if (
            kubeconfig is None
            and not os.environ.get("KUBECONFIG")
            and os.environ.get("KUBERNETES_SERVICE_HOST")
        ):
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None,
                context=context,
                client_configuration=cfg,
            )
    except (ConfigException, OSError) as error:
        raise DevjobsError(str(kubeconfig) if kubeconfig else "kubeconfig", str(error)) from None
    return Kube(client.ApiClient(cfg))


def describe(error: KubeError) -> str:
    """A one-line message for users: RBAC denials and missing objects said plainly."""
    if error.status == 403:
        return f"forbidden (RBAC): {error.message}"
    if error.status == 0:
        return f"cannot reach the API server: {error.message}"
    return error.message or f"{error.status} {error.reason}"
