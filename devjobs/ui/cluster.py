"""What the Jobs view takes from the rest of devjobs and from the cluster, in one place.

Every import of another devjobs layer is here (the Kubernetes layer's client, reflector,
job states, log store and label names; the controller's Manual-run annotation and plan
resolver; Catalyst's API group), so a refactor that moves them changes this module only.

`Store` holds one reflector per resource kind and scope (all namespaces, or each `-n`
namespace), shared by every open page and event stream: Environments, the Jobs and pods
devjobs created, and the log-tail ConfigMaps. Listeners bump `Store.version` and wake
the waiting streams (`Store.changed`); nothing here opens a watch per browser tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devjobs import catalyst
from devjobs.catalyst import API_VERSION as CATALYST_API_VERSION
from devjobs.kube.client import Kube, KubeError, connect, describe
from devjobs.kube.conditions import AGGREGATE_TYPE, TYPE_PREFIX
from devjobs.kube.jobstate import JobState, Phase, job_state, parse_time
from devjobs.kube.logstore import KEY_SUFFIX as LOG_KEY_SUFFIX
from devjobs.kube.vocabulary import (
    ANNOTATION_COMMIT,
    ANNOTATION_CONTAINERS,
    ANNOTATION_JOB_KEY,
    ANNOTATION_LOG_JOB_NAME,
    ANNOTATION_RUN,
    JOB_NAME_LABEL,
    LABEL_ENVIRONMENT,
    LABEL_TRIGGER,
    LOG_SELECTOR,
    MANAGED_SELECTOR,
)
from devjobs.kube.vocabulary import ANNOTATION_ENVIRONMENT_NAMESPACE as ANNOTATION_ENV_NAMESPACE
from devjobs.kube.workspace import CLONE_CONTAINER
from devjobs.resolver.models import JobPlan

log = logging.getLogger("devjobs.ui")

__all__ = [
    "ANNOTATION_COMMIT",
    "ANNOTATION_CONTAINERS",
    "ANNOTATION_JOB_KEY",
    "AGGREGATE_TYPE",
    "CATALYST_API_VERSION",
    "CLONE_CONTAINER",
    "JOB_NAME_LABEL",
    "LABEL_ENVIRONMENT",
    "LABEL_TRIGGER",
    "ANNOTATION_LOG_JOB_NAME",
    "LOG_KEY_SUFFIX",
    "ANNOTATION_RUN",
    "SETUP_PREFIX",
    "Snapshot",
    "TYPE_PREFIX",
    "JobPlan",
    "JobState",
    "Kube",
    "KubeError",
    "Phase",
    "PlanResolver",
    "Store",
    "connect",
    "describe",
    "job_state",
    "parse_time",
]

PlanResolver = Callable[[Mapping[str, Any], Mapping[str, Any], Path | None], JobPlan]
"""(Project, Environment, cache dir) -> the Environment's plan, as the controller's."""

SETUP_PREFIX = "devjobs-setup"
"""Init containers named so run the devcontainer's setup steps (`kube.render`)."""

DEFAULT_PROJECT_NAMESPACE = "catalyst-system"


def environments_path(namespace: str | None) -> str:
    base = f"/apis/{CATALYST_API_VERSION}"
    return (
        f"{base}/namespaces/{quote(namespace)}/environments"
        if namespace
        else f"{base}/environments"
    )


def _core_path(plural: str, namespace: str | None, group: str = "") -> str:
    base = f"/apis/{group}" if group else "/api/v1"
    return f"{base}/namespaces/{quote(namespace)}/{plural}" if namespace else f"{base}/{plural}"


def environment_path(namespace: str, name: str) -> str:
    return f"{environments_path(namespace)}/{quote(name)}"


def belongs_to(obj: Mapping[str, Any], environment: Mapping[str, Any]) -> bool:
    """Whether a Job, pod or log record is the Environment's: labelled with its name, and
    either in its namespace or (in Catalyst's target namespace) annotated with it. No
    namespace rule of devjobs' own: the objects say where they belong."""
    meta = obj.get("metadata") or {}
    env_meta = environment.get("metadata") or {}
    if (meta.get("labels") or {}).get(LABEL_ENVIRONMENT) != environment_label(environment):
        return False
    home = (meta.get("annotations") or {}).get(ANNOTATION_ENV_NAMESPACE) or meta.get("namespace")
    return bool(home == env_meta.get("namespace"))


def environment_label(environment: Mapping[str, Any]) -> str:
    from devjobs.kube.naming import label_value

    return label_value(str((environment.get("metadata") or {}).get("name") or ""))


@dataclass(frozen=True)
class Snapshot:
    """One Environment and what devjobs made for it, as the reflectors hold them now."""

    environment: dict[str, Any]
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    log_tails: list[dict[str, Any]]
    plan: JobPlan | None
    plan_error: str


class Store:
    """The shared reflectors and a plan cache (see the module docstring)."""

    def __init__(
        self,
        kube: Kube,
        namespaces: Sequence[str] = (),
        *,
        resolver: PlanResolver | None = None,
        project_namespace: str | None = DEFAULT_PROJECT_NAMESPACE,
        cache_dir: Path | None = None,
    ) -> None:
        from devjobs.kube.reflector import Reflector

        self.kube = kube
        self.namespaces = tuple(namespaces)
        scopes: Sequence[str | None] = self.namespaces or (None,)
        managed = MANAGED_SELECTOR
        self.environments = [
            Reflector(
                kube, environments_path(ns), api_version=CATALYST_API_VERSION, kind="Environment"
            )
            for ns in scopes
        ]
        self.jobs = [
            Reflector(kube, _core_path("jobs", ns, "batch/v1"), label_selector=managed)
            for ns in scopes
        ]
        self.pods = [
            Reflector(kube, _core_path("pods", ns), label_selector=managed) for ns in scopes
        ]
        self.log_tails = [
            Reflector(
                kube,
                _core_path("configmaps", ns),
                label_selector=LOG_SELECTOR,
            )
            for ns in scopes
        ]
        self.resolver = resolver
        self.project_namespace = project_namespace
        self.cache_dir = cache_dir
        self.version = 0
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._plans: dict[str, JobPlan | str] = {}
        self._resolving: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="devjobs-ui-plan")
        self._threads: list[threading.Thread] = []
        self._stop: threading.Event | None = None
        self._scopes: set[str | None] = set(scopes)
        for reflector in self.reflectors():
            reflector.add_listener(self._on_event)
        for reflector in self.environments:
            reflector.add_listener(self._on_environment)

    def reflectors(self) -> list[Any]:
        return [*self.environments, *self.jobs, *self.pods, *self.log_tails]

    def start(self, stop: threading.Event) -> None:
        with self._lock:
            self._stop = stop
            reflectors = self.reflectors()
        self._threads = [r.start(stop) for r in reflectors]

    def _on_environment(self, event: str, old: Any, new: Any) -> None:
        """With `-n`, also watch each Environment's target namespace (Catalyst's), where
        its Jobs, pods and log records are."""
        if new is None or None in self._scopes:
            return
        meta = new.get("metadata") or {}
        target = catalyst.place(str(meta.get("namespace") or ""), meta.get("labels"))
        self._watch(target.target_namespace)

    def _watch(self, namespace: str) -> None:
        from devjobs.kube.reflector import Reflector

        with self._lock:
            if namespace in self._scopes:
                return
            self._scopes.add(namespace)
            added = [
                Reflector(self.kube, _core_path("jobs", namespace, "batch/v1"),
                          label_selector=MANAGED_SELECTOR),
                Reflector(self.kube, _core_path("pods", namespace),
                          label_selector=MANAGED_SELECTOR),
                Reflector(self.kube, _core_path("configmaps", namespace),
                          label_selector=LOG_SELECTOR),
            ]  # fmt: skip
            self.jobs.append(added[0])
            self.pods.append(added[1])
            self.log_tails.append(added[2])
            stop = self._stop
        for reflector in added:
            reflector.add_listener(self._on_event)
            if stop is not None:
                self._threads.append(reflector.start(stop))

    def wait_synced(self, timeout: float) -> bool:
        return all(r.synced.wait(timeout) for r in self.reflectors())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- change notification ----------------------------------------------------------

    def _on_event(self, event: str, old: Any, new: Any) -> None:
        self.bump()

    def bump(self) -> None:
        with self._lock:
            self.version += 1
            waiters = list(self._waiters)
        for loop, flag in waiters:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(flag.set)

    async def changed(self, version: int, timeout: float) -> int:
        """Wait until `Store.version` differs from `version` (or `timeout` passes); the
        version now."""
        flag = asyncio.Event()
        waiter = (asyncio.get_running_loop(), flag)
        with self._lock:
            if self.version != version:
                return self.version
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(flag.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)
        return self.version

    # --- reading ----------------------------------------------------------------------

    def all_environments(self, namespaces: Iterable[str] | None = None) -> list[dict[str, Any]]:
        wanted = set(namespaces) if namespaces is not None else None
        found = [
            env
            for reflector in self.environments
            for env in reflector.items()
            if wanted is None or (env.get("metadata") or {}).get("namespace") in wanted
        ]
        return sorted(found, key=lambda e: (e["metadata"]["namespace"], e["metadata"]["name"]))

    def environment(self, namespace: str, name: str) -> dict[str, Any] | None:
        for reflector in self.environments:
            found: dict[str, Any] | None = reflector.get(namespace, name)
            if found is not None:
                return found
        return None

    def _of(self, reflectors: Sequence[Any], env: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [obj for r in reflectors for obj in r.items() if belongs_to(obj, env)]

    def snapshot(self, env: dict[str, Any]) -> Snapshot:
        plan, error = self.plan(env)
        return Snapshot(
            environment=env,
            jobs=self._of(self.jobs, env),
            pods=self._of(self.pods, env),
            log_tails=self._of(self.log_tails, env),
            plan=plan,
            plan_error=error,
        )

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        for reflector in self.pods:
            found: dict[str, Any] | None = reflector.get(namespace, name)
            if found is not None:
                return found
        return None

    # --- plans ------------------------------------------------------------------------

    def plan(self, env: Mapping[str, Any]) -> tuple[JobPlan | None, str]:
        """The Environment's plan when resolved (never blocks: the first call starts
        resolving it on a worker thread and a change is signalled when it is ready);
        else (None, why not)."""
        if self.resolver is None:
            return None, ""
        key = json.dumps(
            [(env.get("metadata") or {}).get("uid"), (env.get("spec") or {}).get("sources"),
             (env.get("spec") or {}).get("projectRef")],
            sort_keys=True,
        )  # fmt: skip
        with self._lock:
            cached = self._plans.get(key)
            if cached is None and key not in self._resolving:
                self._resolving.add(key)
                self._pool.submit(self._resolve, key, dict(env))
        if isinstance(cached, JobPlan):
            return cached, ""
        return None, cached or "resolving the plan"

    def _resolve(self, key: str, env: dict[str, Any]) -> None:
        result: JobPlan | str
        try:
            project = self._project(env)
            assert self.resolver is not None
            result = (
                self.resolver(project, env, self.cache_dir)
                if project is not None
                else "the Environment's Project was not found"
            )
        except KubeError as error:
            result = f"cannot read the Project: {describe(error)}"
        except Exception as error:  # a plan that cannot be resolved is shown, not raised
            result = f"the plan cannot be resolved: {error}"
        with self._lock:
            if len(self._plans) > 1024:
                self._plans.clear()
            self._plans[key] = result
            self._resolving.discard(key)
        self.bump()

    def _project(self, env: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = ((env.get("spec") or {}).get("projectRef") or {}).get("name")
        if not isinstance(ref, str) or not ref:
            return None
        meta = env.get("metadata") or {}
        home = catalyst.place(str(meta.get("namespace") or ""), meta.get("labels"))
        for ns in dict.fromkeys(n for n in (home.project_namespace, self.project_namespace) if n):
            found = self.kube.get(
                f"/apis/{CATALYST_API_VERSION}/namespaces/{quote(ns)}/projects/{quote(ref)}"
            )
            if found is not None:
                return found
        return None


def default_resolver() -> PlanResolver:
    """The controller's own plan resolver (Project + Environment -> plan)."""
    from devjobs.controller.main import resolve_plan

    return resolve_plan


def request_run(kube: Kube, namespace: str, name: str, jobs: Sequence[str]) -> None:
    """Ask the controller to run Manual `jobs` (`source/job` or `job`): the annotation it
    honours, written by a merge patch with `kube`, which carries the viewer's identity."""
    body = {"metadata": {"annotations": {ANNOTATION_RUN: ",".join(jobs)}}}
    kube.request(
        "PATCH",
        environment_path(namespace, name),
        {"fieldManager": "devjobs-ui"},
        body,
        content_type="application/merge-patch+json",
    )


def kube_as(kube: Kube, token: str) -> Kube:
    """A client for the same API server that authenticates with the viewer's bearer token
    only (no client certificate, no other credentials of devjobs')."""
    import copy

    from kubernetes import client

    base = kube.api_client.configuration
    cfg = client.Configuration()
    cfg.host = base.host
    cfg.ssl_ca_cert = base.ssl_ca_cert
    cfg.verify_ssl = base.verify_ssl
    cfg.proxy = copy.copy(base.proxy)
    cfg.api_key = {"BearerToken": f"Bearer {token}"}
    cfg.api_key_prefix = {}
    return Kube(client.ApiClient(cfg))
