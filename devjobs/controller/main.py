"""The controller's shell: one reflector per kind, a work queue, workers.

Why not kopf: kopf gives per-object handlers, but the decision here needs a consistent
view of several kinds at once (Environment, Project, build Jobs, devjobs' Jobs and pods,
the workload), and kopf has no "initial list complete" signal for secondary resources:
reconciling before every watch has listed would write half-informed conditions. kopf also
stores handler progress in annotations on the watched object by default (each such
write wakes Catalyst's operator), and its peering is its own CRD, not a Lease. So: one
`kube.reflector.Reflector` per kind, a keyed queue with per-key exponential backoff, and
`leader.LeaderElector`.

Nothing is remembered outside the cluster: a restarted controller lists everything and
`decide` finds the Jobs it created by their labels and deterministic names.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devjobs import catalyst
from devjobs.controller import act
from devjobs.controller.actions import CreateJob
from devjobs.controller.decide import Settings, decide
from devjobs.controller.githubapp import AppChecks
from devjobs.controller.observe import observe
from devjobs.errors import DevjobsError
from devjobs.github.statuses import GitHubStatuses
from devjobs.kube import vocabulary as v
from devjobs.kube.client import Kube, KubeError
from devjobs.kube.jobs import environment_label
from devjobs.kube.reflector import Key, Listener, Reflector, object_key
from devjobs.resolver import environment as envmod
from devjobs.resolver.models import JobPlan

log = logging.getLogger("devjobs.controller")

MAX_BACKOFF = 60.0


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
        github: GitHubStatuses | None = None,
        checks: AppChecks | None = None,
    ) -> None:
        self.kube = kube
        self.config = config
        self.settings = dataclasses.replace(
            config.settings, github=github is not None, checks=checks is not None
        )
        self.resolver = resolver
        self.github = github
        self.checks = checks
        """With a GitHub App: check runs instead of commit statuses."""
        self.queue = WorkQueue()
        self.stats = Stats()
        self._failures: dict[Key, int] = {}
        self.recent = act.RecentCreates()
        self.posted = act.Recent()
        """GitHub states posted and not yet seen recorded (no second post)."""
        """Jobs created and not yet seen by the Job informer (no second apply)."""
        self._plans: dict[str, JobPlan | str] = {}
        self._plans_lock = threading.Lock()
        self.informers: dict[str, list[Reflector]] = {}
        self._build_informers()

    # -- wiring

    _KINDS: tuple[tuple[str, str, str, str, str], ...] = (
        # (name, apiVersion, kind, API prefix, plural)
        ("Environment", catalyst.API_VERSION, envmod.KIND, f"/apis/{catalyst.API_VERSION}",
         "environments"),
        ("Project", catalyst.API_VERSION, "Project", f"/apis/{catalyst.API_VERSION}",
         "projects"),
        ("Job", "batch/v1", "Job", "/apis/batch/v1", "jobs"),
        ("BuildJob", "batch/v1", "Job", "/apis/batch/v1", "jobs"),
        ("Pod", "v1", "Pod", "/api/v1", "pods"),
        # The workload's pods that run devjobs' init containers (InitContainer jobs).
        ("WorkloadPod", "v1", "Pod", "/api/v1", "pods"),
        # The workload's pods not yet scheduled: those devjobs' PreDeploy gate holds.
        ("GatedPod", "v1", "Pod", "/api/v1", "pods"),
        # Kept log records (kube.logstore), and the PreDeploy gate's record (kube.openings).
        ("ConfigMap", "v1", "ConfigMap", "/api/v1", "configmaps"),
        ("Deployment", "apps/v1", "Deployment", "/apis/apps/v1", "deployments"),
    )  # fmt: skip
    _TARGET_KINDS = (
        "Job", "BuildJob", "Pod", "WorkloadPod", "GatedPod", "ConfigMap", "Deployment",
    )  # fmt: skip
    """What lives in an Environment's target namespace (`catalyst.Place`)."""

    def _selectors(self, name: str) -> Mapping[str, str]:
        build = f"{catalyst.BUILD_TYPE_LABEL}={catalyst.BUILD_TYPE}"
        return {
            "Job": {"label_selector": v.MANAGED_SELECTOR},
            "BuildJob": {"label_selector": build},
            "Pod": {"label_selector": v.MANAGED_SELECTOR},
            "WorkloadPod": {"label_selector": v.LABEL_WORKLOAD},
            "GatedPod": {
                "label_selector": "=".join(catalyst.WORKLOAD_POD_LABEL),
                "field_selector": "spec.nodeName=",
            },
            "ConfigMap": {"label_selector": v.CONFIGMAP_SELECTOR},
            "Deployment": {"field_selector": f"metadata.name={self.config.workload}"},
        }.get(name, {})

    def _build_informers(self) -> None:
        """One reflector per kind: cluster-wide, or per watched namespace (the configured
        ones at start; target and team namespaces as their Environments appear)."""
        self.informers = {name: [] for name, *_ in self._KINDS}
        self._watched: set[tuple[str, str]] = set()
        self._watch_lock = threading.Lock()
        self._stop: threading.Event | None = None
        if not self.config.namespaces:
            for name, *_ in self._KINDS:
                self._add_reflector(name, None)
            return
        for namespace in self.config.namespaces:
            for name, *_ in self._KINDS:
                self._add_reflector(name, namespace)
        if self.config.project_namespace:
            self._add_reflector("Project", self.config.project_namespace)

    def _add_reflector(self, name: str, namespace: str | None) -> Reflector | None:
        """Start watching kind `name` in `namespace` (None: all) unless already watched."""
        with self._watch_lock:
            if (name, namespace or "") in self._watched or (name, "") in self._watched:
                return None
            self._watched.add((name, namespace or ""))
            return self._new_reflector(name, namespace)

    def _new_reflector(self, name: str, namespace: str | None) -> Reflector:
        _, api_version, kind, prefix, plural = next(k for k in self._KINDS if k[0] == name)
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        selectors = self._selectors(name)
        reflector = Reflector(
            self.kube, path, api_version=api_version, kind=kind,
            keep_managed_fields=name == "Environment",
            label_selector=selectors.get("label_selector"),
            field_selector=selectors.get("field_selector"),
        )  # fmt: skip
        reflector.add_listener(self._listener(name))
        self.informers[name].append(reflector)
        if self._stop is not None:
            reflector.start(self._stop)
        return reflector

    def _watch_place(self, place: catalyst.Place) -> None:
        """With watched namespaces configured, also watch where an Environment's objects
        are: its target namespace and its team's (Project) namespace."""
        if not self.config.namespaces:
            return
        for name in self._TARGET_KINDS:
            self._add_reflector(name, place.target_namespace)
        self._add_reflector("Project", place.project_namespace)

    def _synced_for(self, place: catalyst.Place) -> bool:
        """Every reflector that covers this Environment's namespaces has listed."""
        wanted = {place.target_namespace, place.project_namespace, ""}
        return all(
            r.synced.is_set()
            for rs in self.informers.values()
            for r in rs
            if _namespace_of(r.path) in wanted
        )

    def _listener(self, name: str) -> Listener:
        def changed(
            _event: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
        ) -> None:
            self._changed(name, old, new)

        return changed

    def _items(self, kind: str) -> list[dict[str, Any]]:
        return [o for inf in self.informers[kind] for o in inf.items()]

    def _envs_in(self, namespace: str) -> list[Key]:
        """The Environments whose objects live in `namespace` (their target namespace)."""
        return [
            object_key(e)
            for e in self._items("Environment")
            if place_of(e).target_namespace == namespace
        ]

    def _changed(
        self, kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
    ) -> None:
        obj = new if new is not None else old
        assert obj is not None
        namespace, name = object_key(obj)
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if kind == "Environment":
            if new is not None:
                self._watch_place(place_of(new))
            self.queue.add((namespace, name))
        elif kind == "Project":
            for env in self._items("Environment"):
                ref = ((env.get("spec") or {}).get("projectRef") or {}).get("name")
                homes = (place_of(env).project_namespace, self.config.project_namespace)
                if ref == name and namespace in homes:
                    self.queue.add(object_key(env))
        elif kind in ("BuildJob", "Deployment"):
            for key in self._envs_in(namespace):
                self.queue.add(key)
        else:  # devjobs' Jobs and pods: their Environment
            owners = [o for o in meta.get("ownerReferences") or [] if o.get("kind") == envmod.KIND]
            if owners:
                self.queue.add((namespace, str(owners[0].get("name"))))
                return
            env_label = labels.get(v.LABEL_ENVIRONMENT) or labels.get(v.LABEL_WORKLOAD)
            for key in self._envs_in(namespace):
                if env_label in (environment_label(key[1]), None):
                    self.queue.add(key)

    # -- reconcile

    def project_for(self, env: Mapping[str, Any]) -> dict[str, Any] | None:
        """`spec.projectRef.name` where Catalyst reads it (the team's namespace of a
        labelled Environment, else its own), else in the configured Project namespace;
        never in any other (an Environment cannot borrow another team's Project)."""
        ref = ((env.get("spec") or {}).get("projectRef") or {}).get("name")
        for ns in (place_of(env).project_namespace, self.config.project_namespace):
            for inf in self.informers["Project"]:
                found = inf.get(str(ns), str(ref))
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
            (found for inf in self.informers["Environment"] if (found := inf.get(*key))), None
        )
        if env_obj is None:
            return None
        place = place_of(env_obj)
        if not self._synced_for(place):
            return 0.2  # its namespaces' reflectors have just started: not yet informed
        namespace = place.target_namespace
        project = self.project_for(env_obj)
        plan: JobPlan | None = None
        plan_error: str | None = None
        retry: float | None = None
        if project is None:
            ref = ((env_obj.get("spec") or {}).get("projectRef") or {}).get("name")
            plan_error = f"Project {ref!r} not found in namespace {place.project_namespace!r}" + (
                f" or {self.config.project_namespace!r}" if self.config.project_namespace else ""
            )
        else:
            try:
                plan = self.plan_for(env_obj, project)
            except DevjobsError as error:
                plan_error = str(error)
                retry = self._backoff(key)

        def in_ns(kind: str) -> list[dict[str, Any]]:
            return [o for o in self._items(kind) if object_key(o)[0] == namespace]

        jobs = in_ns("Job")
        observed = observe(
            env_obj,
            plan=plan,
            plan_error=plan_error,
            project=project,
            build_jobs=in_ns("BuildJob"),
            deployment=next(iter(in_ns("Deployment")), None),
            jobs=jobs,
            pods=in_ns("Pod"),
            workload_pods=in_ns("WorkloadPod"),
            configmaps=in_ns("ConfigMap"),
            workload_name=self.config.workload,
            gated_pods=in_ns("GatedPod"),
        )
        self.recent.seen(namespace, [str(o["metadata"]["name"]) for o in jobs])
        actions = decide(observed, self.settings).actions
        if actions:
            if any(isinstance(a, CreateJob) for a in actions):
                self.stats.first_create.setdefault(key, time.monotonic())
            wait = act.execute(
                self.kube, observed.environment, actions, self.stats.counters, self.github,
                self.recent, self.posted, self.checks,
            )  # fmt: skip
            if wait is not None:  # GitHub asked to wait: look again then
                retry = wait if retry is None else min(retry, wait)
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
        with self._watch_lock:
            initial = [r for reflectors in self.informers.values() for r in reflectors]
            self._stop = stop
        for reflector in initial:
            reflector.start(stop)
        while not stop.is_set() and not all(r.synced.is_set() for r in initial):
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


def place_of(env: Mapping[str, Any]) -> catalyst.Place:
    meta = env.get("metadata") or {}
    return catalyst.place(str(meta.get("namespace") or ""), meta.get("labels"))


def _namespace_of(path: str) -> str:
    """The namespace of a collection path, '' for a cluster-wide one."""
    parts = path.split("/")
    return parts[parts.index("namespaces") + 1] if "namespaces" in parts else ""
