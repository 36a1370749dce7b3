"""The controller's shell: watches (list + watch, resumable), a work queue, workers.

Why not kopf: kopf gives per-object handlers, but the decision here needs a consistent
view of several kinds at once (Environment, Project, build Jobs, devjobs' Jobs and pods,
the workload), and kopf has no "initial list complete" signal for secondary resources:
reconciling before every watch has listed would write half-informed conditions. kopf also
stores handler progress in annotations on the watched object by default (each such
write wakes Catalyst's operator), and its peering is its own CRD, not a Lease. So: one
small informer per kind (list, then watch from the list's resourceVersion, resume from
the last version seen, re-list on 410), a keyed queue with per-key exponential backoff,
and `leader.LeaderElector`.

Nothing is remembered outside the cluster: a restarted controller lists everything and
`decide.reconcile` finds the Jobs it created by their labels and deterministic names.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devjobs.controller import act
from devjobs.controller.decide import Settings, decide
from devjobs.controller.observe import BUILD_LABEL, WORKLOAD_LABEL, observe
from devjobs.controller.report import Reporting
from devjobs.errors import DevjobsError
from devjobs.kube.client import Kube, KubeError, iter_lines
from devjobs.kube.logstore import LABEL_COMPONENT as LOG_COMPONENT_LABEL
from devjobs.kube.render import LABEL_ENVIRONMENT
from devjobs.resolver import environment as envmod
from devjobs.resolver.models import JobPlan

log = logging.getLogger("devjobs.controller")

Key = tuple[str, str]
MANAGED = "app.kubernetes.io/managed-by=devjobs"
MAX_BACKOFF = 60.0


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


# --- informer -----------------------------------------------------------------------


@dataclass
class Informer:
    """A local copy of one kind (in one namespace or all), kept by list + watch."""

    kube: Kube
    kind: str
    api_version: str
    path: str
    query: Mapping[str, str]
    on_change: Callable[[str, Mapping[str, Any] | None, Mapping[str, Any] | None], None]
    keep_managed_fields: bool = False
    store: dict[Key, dict[str, Any]] = field(default_factory=dict)
    synced: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    watch_seconds: int = 300

    def items(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.store.values())

    def get(self, key: Key) -> dict[str, Any] | None:
        with self.lock:
            return self.store.get(key)

    def _clean(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        if not self.keep_managed_fields:
            (obj.get("metadata") or {}).pop("managedFields", None)
        return obj

    def _set(self, obj: dict[str, Any]) -> None:
        key = _key(obj)
        with self.lock:
            old = self.store.get(key)
            self.store[key] = obj
        if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get(
            "resourceVersion"
        ):
            self.on_change(self.kind, old, obj)

    def _remove(self, obj: Mapping[str, Any]) -> None:
        with self.lock:
            old = self.store.pop(_key(obj), None)
        if old is not None:
            self.on_change(self.kind, old, None)

    def _list(self) -> str:
        data = self.kube.request("GET", self.path, dict(self.query))
        items = {_key(o): self._clean(o) for o in data.get("items") or []}
        with self.lock:
            gone = [o for k, o in self.store.items() if k not in items]
        for obj in gone:
            self._remove(obj)
        for obj in items.values():
            self._set(obj)
        self.synced.set()
        return str(data["metadata"]["resourceVersion"])

    def run(self, stop: threading.Event) -> None:
        version: str | None = None
        delay = 0.5
        while not stop.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version, stop)
                delay = 0.5
            except KubeError as error:
                if error.status == 410:
                    version = None
                    continue
                log.warning("watch %s %s: %s (retry in %.1fs)", self.kind, self.path, error, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception as error:  # a broken stream: resume from the last version
                log.warning("watch %s %s: %s (retry in %.1fs)", self.kind, self.path, error, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _watch(self, version: str, stop: threading.Event) -> str:
        query: dict[str, str | int | bool] = {
            **self.query,
            "watch": True,
            "resourceVersion": version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": self.watch_seconds,
        }
        response = self.kube.request(
            "GET", self.path, query, timeout=(10, self.watch_seconds + 30), stream=True
        )
        import json

        try:
            for line in iter_lines(response):
                if stop.is_set():
                    break
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise KubeError(int(obj.get("code") or 0), str(obj.get("reason") or ""),
                                    str(obj.get("message") or ""))  # fmt: skip
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED"):
                    self._set(self._clean(obj))
                elif kind == "DELETED":
                    self._remove(obj)
        finally:
            response.release_conn()
        return version


# --- queue ----------------------------------------------------------------------------


@dataclass
class WorkQueue:
    """Keys to reconcile; a key is never processed by two workers at once, and a key
    queued again while it is processed is processed once more afterwards."""

    _heap: list[tuple[float, Key]] = field(default_factory=list)
    _due: dict[Key, float] = field(default_factory=dict)
    _busy: set[Key] = field(default_factory=set)
    _again: dict[Key, float] = field(default_factory=dict)
    _cv: threading.Condition = field(default_factory=threading.Condition)

    def add(self, key: Key, delay: float = 0.0) -> None:
        when = time.monotonic() + delay
        with self._cv:
            if key in self._busy:
                self._again[key] = min(when, self._again.get(key, when))
                return
            if key in self._due and self._due[key] <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._cv.notify()

    def get(self, stop: threading.Event) -> Key | None:
        with self._cv:
            while not stop.is_set():
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded entry
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._busy.add(key)
                    return key
                timeout = (self._heap[0][0] - now) if self._heap else 0.5
                self._cv.wait(min(timeout, 0.5))
        return None

    def done(self, key: Key) -> None:
        with self._cv:
            self._busy.discard(key)
            again = self._again.pop(key, None)
        if again is not None:
            self.add(key, max(0.0, again - time.monotonic()))

    def __len__(self) -> int:
        with self._cv:
            return len(self._due) + len(self._busy)


# --- controller ---------------------------------------------------------------------


@dataclass
class Config:
    namespaces: tuple[str, ...] = ()
    """Watched namespaces; empty: all."""
    project_namespace: str | None = "catalyst-system"
    """Where Projects live besides the Environment's own namespace (Catalyst's)."""
    workload: str = "web"
    workers: int = 4
    settings: Settings = field(default_factory=Settings)
    cache_dir: Path | None = None


@dataclass
class Stats:
    reconciles: int = 0
    errors: int = 0
    counters: act.Counters = field(default_factory=act.Counters)
    first_create: dict[Key, float] = field(default_factory=dict)
    """Monotonic time of the first Job created for each Environment (bench)."""


PlanResolver = Callable[[Mapping[str, Any], Mapping[str, Any], Path | None], JobPlan]


def resolve_plan(
    project: Mapping[str, Any], environment: Mapping[str, Any], cache_dir: Path | None
) -> JobPlan:
    """The Environment's plan from the Project and Environment as the API returns them."""
    from devjobs.resolver.plan import PlanRequest, resolve

    request = PlanRequest(
        project_object=project, environment_object=environment, target="cluster",
        cache_dir=cache_dir,
    )  # fmt: skip
    return resolve(request).plan


class Controller:
    def __init__(
        self,
        kube: Kube,
        config: Config,
        resolver: PlanResolver = resolve_plan,
        reporting: Reporting | None = None,
    ) -> None:
        self.kube = kube
        self.config = config
        self.resolver = resolver
        self.reporting = reporting if reporting is not None else Reporting()
        self.queue = WorkQueue()
        self.stats = Stats()
        self._failures: dict[Key, int] = {}
        self.recent = act.RecentCreates()
        """Jobs created and not yet seen by the Job informer (no second apply)."""
        self._plans: dict[str, JobPlan | str] = {}
        self._plans_lock = threading.Lock()
        self.informers: dict[str, list[Informer]] = {}
        self._build_informers()

    # -- wiring

    def _paths(self, prefix: str, plural: str) -> list[str]:
        if not self.config.namespaces:
            return [f"{prefix}/{plural}"]
        return [f"{prefix}/namespaces/{ns}/{plural}" for ns in self.config.namespaces]

    def _build_informers(self) -> None:
        env_prefix = f"/apis/{envmod.API_VERSION}"
        kinds: list[tuple[str, str, str, str, dict[str, str], bool]] = [
            ("Environment", envmod.API_VERSION, env_prefix, "environments", {}, True),
            ("Project", envmod.API_VERSION, env_prefix, "projects", {}, False),
            ("Job", "batch/v1", "/apis/batch/v1", "jobs", {"labelSelector": MANAGED}, False),
            ("BuildJob", "batch/v1", "/apis/batch/v1", "jobs",
             {"labelSelector": f"{BUILD_LABEL}=build"}, False),
            ("Pod", "v1", "/api/v1", "pods", {"labelSelector": MANAGED}, False),
            # The workload's pods that run devjobs' init containers (InitContainer jobs).
            ("WorkloadPod", "v1", "/api/v1", "pods", {"labelSelector": WORKLOAD_LABEL}, False),
            # Kept log tails (kube.logstore): which Job's logs each one holds.
            ("ConfigMap", "v1", "/api/v1", "configmaps",
             {"labelSelector": f"{LOG_COMPONENT_LABEL}=log-tail"}, False),
            ("Deployment", "apps/v1", "/apis/apps/v1", "deployments",
             {"fieldSelector": f"metadata.name={self.config.workload}"}, False),
        ]  # fmt: skip
        for kind, api_version, prefix, plural, query, managed_fields in kinds:
            paths = self._paths(prefix, plural)
            ns = self.config.project_namespace
            if (
                kind == "Project"
                and self.config.namespaces
                and ns
                and ns not in self.config.namespaces
            ):
                paths.append(f"{prefix}/namespaces/{ns}/{plural}")
            self.informers[kind] = [
                Informer(self.kube, {"BuildJob": "Job", "WorkloadPod": "Pod"}.get(kind, kind),
                         api_version, path,
                         query, self._changed, keep_managed_fields=managed_fields)
                for path in paths
            ]  # fmt: skip

    def _items(self, kind: str) -> list[dict[str, Any]]:
        return [o for inf in self.informers[kind] for o in inf.items()]

    def _envs_in(self, namespace: str) -> list[Key]:
        return [_key(e) for e in self._items("Environment") if _key(e)[0] == namespace]

    def _changed(
        self, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> None:
        obj = new if new is not None else old
        assert obj is not None
        namespace, name = _key(obj)
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if kind == "Environment":
            self.queue.add((namespace, name))
        elif kind == "Project":
            for env in self._items("Environment"):
                ref = ((env.get("spec") or {}).get("projectRef") or {}).get("name")
                env_ns = _key(env)[0]
                if ref == name and namespace in (env_ns, self.config.project_namespace):
                    self.queue.add(_key(env))
        elif kind == "Job" and labels.get(BUILD_LABEL) == "build" or kind == "Deployment":
            for key in self._envs_in(namespace):
                self.queue.add(key)
        else:  # devjobs' Jobs and pods: their Environment
            owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") == envmod.KIND]
            if owners:
                self.queue.add((namespace, str(owners[0].get("name"))))
                return
            env_label = labels.get(LABEL_ENVIRONMENT) or labels.get(WORKLOAD_LABEL)
            for key in self._envs_in(namespace):
                if env_label in (key[1], None):
                    self.queue.add(key)

    # -- reconcile

    def project_for(self, env: Mapping[str, Any]) -> dict[str, Any] | None:
        """`spec.projectRef.name` in the Environment's namespace, else in the configured
        Project namespace; never in any other (a Project's jobs run only in its
        Environments' namespaces, and an Environment cannot borrow another team's)."""
        ref = ((env.get("spec") or {}).get("projectRef") or {}).get("name")
        namespace = _key(env)[0]
        for ns in (namespace, self.config.project_namespace):
            for inf in self.informers["Project"]:
                found = inf.get((str(ns), str(ref)))
                if found is not None:
                    return found
        return None

    def plan_for(self, env: Mapping[str, Any], project: Mapping[str, Any]) -> JobPlan:
        """Resolved once per (Project generation, Environment pins): the same commit of
        200 Environments of one Project is fetched and read once."""
        import json

        pmeta = project.get("metadata") or {}
        spec = env.get("spec") or {}
        key = json.dumps(
            [pmeta.get("uid"), pmeta.get("generation"), pmeta.get("resourceVersion")
             if not pmeta.get("generation") else None, spec.get("sources")],
            sort_keys=True,
        )  # fmt: skip
        with self._plans_lock:
            cached = self._plans.get(key)
        if isinstance(cached, JobPlan):
            return cached
        plan = self.resolver(project, env, self.config.cache_dir)
        with self._plans_lock:
            if len(self._plans) > 4096:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def reconcile_one(self, key: Key) -> float | None:
        """One round for one Environment; returns a delay to look again (errors), or None."""
        env_obj = next(
            (inf.get(key) for inf in self.informers["Environment"] if inf.get(key)), None
        )
        if env_obj is None:
            return None
        namespace = key[0]
        project = self.project_for(env_obj)
        plan: JobPlan | None = None
        plan_error: str | None = None
        retry: float | None = None
        if project is None:
            ref = ((env_obj.get("spec") or {}).get("projectRef") or {}).get("name")
            plan_error = f"Project {ref!r} not found in namespace {namespace!r}" + (
                f" or {self.config.project_namespace!r}" if self.config.project_namespace else ""
            )
        else:
            try:
                plan = self.plan_for(env_obj, project)
            except DevjobsError as error:
                plan_error = str(error)
                retry = self._backoff(key)
        in_ns = [o for o in self._items("Job") if _key(o)[0] == namespace]
        observed = observe(
            env_obj,
            plan=plan,
            plan_error=plan_error,
            project=project,
            build_jobs=[o for o in self._items("BuildJob") if _key(o)[0] == namespace],
            deployment=next(
                (o for o in self._items("Deployment") if _key(o)[0] == namespace), None
            ),
            jobs=in_ns,
            pods=[o for o in self._items("Pod") if _key(o)[0] == namespace],
            workload_pods=[o for o in self._items("WorkloadPod") if _key(o)[0] == namespace],
            log_configmaps=[o for o in self._items("ConfigMap") if _key(o)[0] == namespace],
            workload_name=self.config.workload,
        )
        self.recent.seen(namespace, [str(o["metadata"]["name"]) for o in in_ns])
        decision = decide(observed, self.config.settings)
        actions = decision.actions
        if actions:
            if any(type(a).__name__ == "CreateJob" for a in actions):
                self.stats.first_create.setdefault(key, time.monotonic())
            act.execute(
                self.kube, observed.environment, actions, self.stats.counters, self.reporting,
                self.recent,
            )  # fmt: skip
        # After the actions: a workload patch applied this round makes its InitContainer
        # jobs `pending` (`decision.init_statuses`), as `devjobs run` posts them.
        self.reporting.post_statuses(
            self.kube, observed, decision.init_statuses, decision.init_cancelled
        )
        if retry is None:
            self._failures.pop(key, None)
        return retry

    def _backoff(self, key: Key) -> float:
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        return float(min(MAX_BACKOFF, 0.5 * 2 ** (count - 1)))

    def _worker(self, stop: threading.Event) -> None:
        while not stop.is_set():
            key = self.queue.get(stop)
            if key is None:
                return
            try:
                self.stats.reconciles += 1
                retry = self.reconcile_one(key)
            except (KubeError, DevjobsError) as error:
                self.stats.errors += 1
                retry = self._backoff(key)
                log.warning("%s/%s: %s (retry in %.1fs)", key[0], key[1], error, retry)
            except Exception:
                self.stats.errors += 1
                retry = self._backoff(key)
                log.exception("%s/%s: reconcile failed (retry in %.1fs)", key[0], key[1], retry)
            finally:
                self.queue.done(key)
            if retry is not None:
                self.queue.add(key, retry)

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Watch and reconcile until `stop` is set."""
        threads = [
            threading.Thread(target=inf.run, args=(stop,), name=f"watch-{inf.kind}", daemon=True)
            for infs in self.informers.values()
            for inf in infs
        ]
        for thread in threads:
            thread.start()
        all_informers = [inf for infs in self.informers.values() for inf in infs]
        while not stop.is_set() and not all(inf.synced.is_set() for inf in all_informers):
            stop.wait(0.05)
        if stop.is_set():
            return
        scope = ", ".join(self.config.namespaces) or "all namespaces"
        log.info("watching %s; %d Environments", scope, len(self._items("Environment")))
        workers = [
            threading.Thread(target=self._worker, args=(stop,), name=f"worker-{i}", daemon=True)
            for i in range(max(1, self.config.workers))
        ]
        for thread in workers:
            thread.start()
        if ready is not None:
            ready.set()
        stop.wait()
        for thread in workers:
            thread.join(timeout=5)
