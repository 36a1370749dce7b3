"""GitHub's Re-run buttons: the controller's webhook endpoint.

`serve(controller, host, port, receiver, stop)` serves `github.webhook.webhook_handler` on
`--webhook-address` in a thread. A verified `check_run rerequested` delivery asks for
that job again; `check_suite rerequested` for every job of the suite (each job that ran
as a Job at that commit). The request is the one the controller already honours: the
Environment's `devjobs.dev/run` annotation (merged with any request already there), on
the Environment whose Project source has that repository (`repositoryUrl`) and whose
current commit of it is the delivery's `head_sha`. The controller then creates a new Job
(a new attempt), which gets a new check run on that commit.

Replays: `ClusterReplayGuard` keeps the ids of deliveries acted on in the ConfigMap
`devjobs-webhook-deliveries` of the controller's namespace (id -> epoch seconds, pruned
after `REPLAY_TTL`, at most `MAX_DELIVERIES`), claimed by a JSON patch guarded by the
ConfigMap's resourceVersion, so two replicas or a restarted controller never act on the
same delivery twice. A ConfigMap rather than annotations on the Environments: a delivery
that matches no Environment must be remembered too, and one object holds them all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from devjobs.controller.act import env_path
from devjobs.controller.serving import serve_until
from devjobs.errors import DevjobsError
from devjobs.github.statuses import github_repo
from devjobs.github.webhook import REPLAY_TTL, RerunRequest, WebhookReceiver, webhook_handler
from devjobs.kube import vocabulary as v
from devjobs.kube.client import Kube, KubeError, collection_path
from devjobs.kube.podspec import revisions
from devjobs.kube.reflector import object_key
from devjobs.resolver import environment as envmod
from devjobs.resolver.models import JobPlan, RunAs

if TYPE_CHECKING:
    from devjobs.controller.main import Controller

log = logging.getLogger("devjobs.controller.webhook")

MAX_DELIVERIES = 5000
"""Delivery ids kept (the oldest go first): ~60 bytes each, far within a ConfigMap's
1 MiB."""


class ClusterReplayGuard:
    """`github.webhook.ReplayGuard` kept in a ConfigMap (see the module doc)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str = v.WEBHOOK_DELIVERIES,
        *,
        ttl: float = REPLAY_TTL,
        max_entries: int = MAX_DELIVERIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kube = kube
        self._namespace = namespace
        self._name = name
        self._ttl = ttl
        self._max = max(1, max_entries)
        self._clock = clock
        self._path = f"{collection_path('v1', 'ConfigMap', namespace)}/{quote(name)}"

    def claim(self, delivery: str) -> bool:
        for _ in range(8):
            found = self._kube.get(self._path)
            now = self._clock()
            if found is None:
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": self._name,
                        "namespace": self._namespace,
                        "labels": {v.LABEL_MANAGED_BY: v.MANAGED_BY},
                    },
                    "data": {delivery: str(int(now))},
                }
                try:
                    self._kube.request(
                        "POST", collection_path("v1", "ConfigMap", self._namespace), body=body
                    )
                    return True
                except KubeError as error:
                    if error.status == 409:
                        continue  # another replica created it: read it again
                    raise
            data: Mapping[str, str] = found.get("data") or {}
            if delivery in data:
                return False
            patch: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion",
                 "value": found["metadata"]["resourceVersion"]},
            ]  # fmt: skip
            if not data:
                patch.append({"op": "add", "path": "/data", "value": {}})
            patch += [{"op": "remove", "path": f"/data/{old}"} for old in self._expired(data, now)]
            patch.append({"op": "add", "path": f"/data/{delivery}", "value": str(int(now))})
            try:
                self._patch(patch)
                return True
            except KubeError as error:
                if error.status in (409, 422):
                    continue  # changed meanwhile: decide again on what is there now
                raise
        raise DevjobsError(self._path, "could not claim the delivery: too many conflicts")

    def release(self, delivery: str) -> None:
        try:
            self._patch([{"op": "remove", "path": f"/data/{delivery}"}])
        except KubeError as error:
            if error.status not in (404, 409, 422):
                raise

    def _expired(self, data: Mapping[str, str], now: float) -> Iterable[str]:
        def at(value: str) -> float:
            return float(value) if value.isdigit() else 0.0

        old = [k for k, value in data.items() if now - at(value) > self._ttl]
        rest = sorted((at(value), k) for k, value in data.items() if k not in old)
        over = len(rest) + 1 - self._max
        return old + [k for _, k in rest[: max(0, over)]]

    def _patch(self, patch: list[dict[str, Any]]) -> None:
        self._kube.request(
            "PATCH", self._path, {"fieldManager": v.CONTROLLER_COMPONENT}, patch,
            content_type="application/json-patch+json",
        )  # fmt: skip


def _jobs_to_rerun(
    request: RerunRequest, plan: JobPlan, env_jobs: Iterable[Mapping[str, Any]]
) -> list[str]:
    """The job keys the delivery asks for in this plan (only `runAs: Job` jobs: an init
    container job runs again with the workload's next rollout, not on request)."""
    sources = {
        s.name
        for s in plan.sources
        if s.repository_url
        and (github_repo(s.repository_url) or "").lower() == request.repo.lower()
    }
    runnable = {j.key for j in plan.jobs if j.source in sources and j.run_as is RunAs.JOB}
    if not request.whole_suite:
        key = f"{request.source}/{request.job}"
        return [key] if key in runnable else []
    ran = set()
    for job in env_jobs:
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        if annotations.get(v.ANNOTATION_COMMIT) == request.head_sha:
            ran.add(str(annotations.get(v.ANNOTATION_JOB_KEY, "")))
    return sorted(runnable & ran)


def request_rerun(controller: Controller, request: RerunRequest) -> int:
    """Set `devjobs.dev/run` on each Environment at the delivery's commit that has the
    requested jobs; returns how many Environments were asked."""
    asked = 0
    for env_obj in [o for inf in controller.informers["Environment"] for o in inf.items()]:
        project = controller.project_for(env_obj)
        if project is None:
            continue
        try:
            plan = controller.plan_for(env_obj, project)
        except DevjobsError:
            continue
        env = envmod.from_object(env_obj)
        current = revisions(plan, env)
        if request.head_sha not in current.values():
            continue
        namespace = env.jobs_namespace
        jobs = [
            o
            for o in (x for inf in controller.informers["Job"] for x in inf.items())
            if object_key(o)[0] == namespace
            and ((o.get("metadata") or {}).get("labels") or {}).get(v.LABEL_ENVIRONMENT) is not None
        ]
        keys = [
            k
            for k in _jobs_to_rerun(request, plan, jobs)
            if current.get(k.partition("/")[0]) == request.head_sha
        ]
        if not keys:
            continue
        _ask(controller.kube, env_obj, keys)
        controller.queue.add(object_key(env_obj))
        asked += 1
        log.info(
            "webhook delivery %s: re-running %s on %s", request.delivery, ", ".join(keys), env.ref
        )
    if not asked:
        log.warning(
            "webhook delivery %s: no Environment is at %s of %s with %s",
            request.delivery,
            request.head_sha[:12],
            request.repo,
            f"{request.source}/{request.job}" if request.source else "its jobs",
        )
    return asked


def _ask(kube: Kube, env_obj: Mapping[str, Any], keys: list[str]) -> None:
    """Add `keys` to the Environment's Manual request (a merge patch guarded by the
    resourceVersion, read again on a conflict)."""
    path = env_path(envmod.from_object(env_obj))
    current: Mapping[str, Any] | None = env_obj
    for _ in range(5):
        if current is None:
            return
        cmeta = current.get("metadata") or {}
        existing = str((cmeta.get("annotations") or {}).get(v.ANNOTATION_RUN) or "")
        asked = [p.strip() for p in existing.split(",") if p.strip()]
        wanted = list(dict.fromkeys([*asked, *keys]))
        body = {
            "metadata": {
                "resourceVersion": cmeta.get("resourceVersion"),
                "annotations": {v.ANNOTATION_RUN: ",".join(wanted)},
            }
        }
        try:
            kube.request(
                "PATCH", path, {"fieldManager": v.CONTROLLER_COMPONENT}, body,
                content_type="application/merge-patch+json",
            )  # fmt: skip
            return
        except KubeError as error:
            if error.status != 409:
                raise
        current = kube.get(path)
    raise DevjobsError(path, "could not set the re-run request: too many conflicts")


def serve(
    controller: Controller,
    host: str,
    port: int,
    receiver: WebhookReceiver,
    stop: threading.Event,
    *,
    path: str = "/github/webhook",
) -> ThreadingHTTPServer:
    """Serve the webhook on a daemon thread until `stop` is set; returns the server (its
    `server_address` has the port when asked for port 0)."""

    def on_rerun(request: RerunRequest) -> None:
        request_rerun(controller, request)

    handler = webhook_handler(receiver, on_rerun, path=path)
    server = ThreadingHTTPServer((host, port), handler)
    serve_until(server, stop, "webhook")
    log.info("GitHub webhook on %s:%d%s", *server.server_address[:2], path)
    return server
