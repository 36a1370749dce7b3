"""Executing the decided actions: the only place the controller writes to the cluster
(and to GitHub).

Each action is idempotent on its own, so a crash between two of them is repaired by the
next reconcile: Jobs are server-side applied under deterministic names, deletions ignore
`404`, conditions go through `status.write_conditions` (merge by type, JSON patch guarded
by the resourceVersion), the Manual request is removed only while it still holds the value
that was acted on, and Events have deterministic names (`409` means already recorded).

Reporting may never fail a job or stop a round: a log record that cannot be kept or a
status GitHub refuses is logged and recorded as a Warning Event on the Environment (one
Event per distinct failure, by its deterministic name), and the next round decides again.
The GitHub state posted is kept on the Job, or for an InitContainer job on the workload
Deployment, where `observe` reads it back: nothing is remembered in this process but the
Jobs created and not yet seen (`RecentCreates`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from devjobs import catalyst
from devjobs.controller.actions import (
    Action,
    ApplyWorkload,
    ClearManualRequest,
    CreateJob,
    DeleteJob,
    OpenGate,
    PostCheckRun,
    PostStatus,
    RecordEvent,
    RecordOpenings,
    SaveLogTail,
    WriteConditions,
)
from devjobs.controller.githubapp import AppChecks
from devjobs.errors import DevjobsError
from devjobs.github.checks import check_run_requests
from devjobs.github.http import RetryLater
from devjobs.github.statuses import GitHubStatuses, post_job_status, state_for
from devjobs.kube import naming
from devjobs.kube import vocabulary as v
from devjobs.kube.client import Kube, KubeError, collection_path
from devjobs.kube.logstore import masked_log_tails, save_log_tail
from devjobs.kube.status import write_conditions
from devjobs.resolver import environment as envmod

log = logging.getLogger("devjobs.controller")


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
class Recent:
    """Writes this process made that its reflectors have not shown yet.

    `decide` asks for what it does not observe; when a reflector lags behind a write,
    the next round (another object's event) would ask for the same write again (2 of
    1002 applies in bench/controller_200.py; a second `pending` commit status). The shell
    remembers each write by what it wrote to, and the value, until the reflector shows
    it or for `ttl` seconds (a Job deleted before it was ever seen is created again after
    that), and holds back a write it remembers. The pure core stays as it is."""

    ttl: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _made: dict[tuple[str, ...], tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrote(self, key: tuple[str, ...], value: str) -> None:
        with self._lock:
            self._made[key] = (value, self.clock())

    def forget(self, keys: Collection[tuple[str, ...]]) -> None:
        """The reflectors show these: nothing to remember for them."""
        with self._lock:
            for key in keys:
                self._made.pop(key, None)

    def holds(self, key: tuple[str, ...], value: str) -> bool:
        """Whether `value` was just written to `key` and is not yet seen."""
        with self._lock:
            made = self._made.get(key)
            if made is None:
                return False
            if self.clock() - made[1] > self.ttl:
                del self._made[key]
                return False
            return made[0] == value

    def __len__(self) -> int:
        return len(self._made)


@dataclass
class RecentCreates:
    """The Jobs created and not yet seen (`Recent`, keyed by namespace and name, valued by
    spec hash)."""

    ttl: float = 60.0
    clock: Callable[[], float] = time.monotonic
    memory: Recent = field(init=False)

    def __post_init__(self) -> None:
        self.memory = Recent(self.ttl, self.clock)

    def created(self, namespace: str, action: CreateJob) -> None:
        self.memory.wrote((namespace, action.name), _spec_hash(action))

    def seen(self, namespace: str, names: Collection[str]) -> None:
        """The informer shows these Jobs of `namespace`: nothing to remember for them."""
        self.memory.forget([(namespace, name) for name in names])

    def holds(self, namespace: str, action: CreateJob) -> bool:
        """Whether `action` creates a Job just created and not yet seen (same spec)."""
        return self.memory.holds((namespace, action.name), _spec_hash(action))

    def __len__(self) -> int:
        return len(self.memory)


def _spec_hash(action: CreateJob) -> str:
    meta = action.manifest.get("metadata") or {}
    return str((meta.get("annotations") or {}).get(v.ANNOTATION_SPEC_HASH, ""))


def execute(
    kube: Kube,
    env: envmod.Environment,
    actions: Sequence[Action],
    counters: Counters | None = None,
    github: GitHubStatuses | None = None,
    recent: RecentCreates | None = None,
    posted: Recent | None = None,
    checks: AppChecks | None = None,
) -> float | None:
    """Run `actions` in order; the first failure raises (KubeError or DevjobsError) and the
    rest wait for the retry, which decides again from what is then observed. A CreateJob
    that `recent` holds (created, not yet seen by the informer) is not applied again.
    Returns the seconds after which GitHub asked to be tried again (a rate limit), if
    it did: the caller requeues the Environment then."""
    counters = counters if counters is not None else Counters()
    retry: float | None = None
    for action in actions:
        if isinstance(action, CreateJob):
            if recent is not None and recent.holds(env.jobs_namespace, action):
                log.debug("%s: Job %s created already, not yet seen", env.ref, action.name)
                continue
            kube.apply(action.manifest)
            if recent is not None:
                recent.created(env.jobs_namespace, action)
            counters.add("job-create")
            log.info("%s: created Job %s", env.ref, action.name)
        elif isinstance(action, DeleteJob):
            path = f"{collection_path('batch/v1', 'Job', env.jobs_namespace)}/{quote(action.name)}"
            kube.delete(path, propagation="Background")
            counters.add("job-delete")
            log.info("%s: cancelled Job %s (%s)", env.ref, action.name, action.reason)
        elif isinstance(action, ApplyWorkload):
            kube.apply(action.patch, field_manager=v.FIELD_MANAGER)
            counters.add("workload-apply")
            log.info("%s: applied init containers to %s", env.ref, action.patch["metadata"]["name"])
        elif isinstance(action, RecordOpenings):
            kube.apply(action.manifest, field_manager=v.FIELD_MANAGER)
            counters.add("gate-record")
            log.info("%s: recorded the pod templates opened", env.ref)
        elif isinstance(action, OpenGate):
            if open_gate(kube, env, action):
                counters.add("gate-open")
        elif isinstance(action, WriteConditions):
            wrote = write_conditions(
                kube, env.namespace, env.name, action.conditions,
                remove=action.remove, field_manager=v.FIELD_MANAGER,
            )  # fmt: skip
            if wrote:
                counters.add("status")
                log.info("%s: conditions written", env.ref)
        elif isinstance(action, SaveLogTail):
            if keep_log_tail(kube, env, action):
                counters.add("log-tail")
        elif isinstance(action, ClearManualRequest):
            if clear_request(kube, env, action.value):
                counters.add("request-clear")
        elif isinstance(action, RecordEvent):
            if record_event(kube, env, action):
                counters.add("event")
        elif isinstance(action, PostStatus):
            key = _post_key(env, action)
            value = f"{state_for(action.state.phase)}@{action.state.commit}"
            if posted is not None and posted.holds(key, value):
                continue
            if post_status(kube, env, github, action):
                counters.add("github-status")
                if posted is not None:
                    posted.wrote(key, value)
        elif isinstance(action, PostCheckRun):
            key = (*_check_key(env, action), "check-run")
            value = f"{action.status}@{action.report.commit}"
            if posted is not None and posted.holds(key, value):
                continue
            wait = post_check_run(kube, env, checks, action)
            if wait is None:
                counters.add("github-check-run")
                if posted is not None:
                    posted.wrote(key, value)
            elif wait > 0:
                retry = wait if retry is None else min(retry, wait)
    return retry


def open_gate(kube: Kube, env: envmod.Environment, action: OpenGate) -> bool:
    """Remove devjobs' scheduling gate from the pod (a JSON patch of the pod's own spec,
    the one change Kubernetes allows there), only while it is the same pod and the gate
    is where it was seen; False when the pod is gone or changed (the next round decides
    again: a reflector that lags shows the gate once more, and the guard then refuses)."""
    pointer = f"/spec/schedulingGates/{action.gate_index}"
    patch = [
        {"op": "test", "path": "/metadata/uid", "value": action.uid},
        {"op": "test", "path": f"{pointer}/name", "value": v.PREDEPLOY_GATE},
        {"op": "remove", "path": pointer},
    ]
    path = f"{collection_path('v1', 'Pod', env.jobs_namespace)}/{quote(action.pod)}"
    try:
        kube.request(
            "PATCH", path, {"fieldManager": v.CONTROLLER_COMPONENT}, patch,
            content_type="application/json-patch+json",
        )  # fmt: skip
    except KubeError as error:
        if error.status in (404, 409, 422):
            return False
        raise
    log.info("%s: opened the PreDeploy gate of pod %s", env.ref, action.pod)
    return True


def env_path(env: envmod.Environment) -> str:
    return (
        f"/apis/{catalyst.API_VERSION}/namespaces/{quote(env.namespace)}/"
        f"{envmod.PLURAL}/{quote(env.name)}"
    )


def clear_request(kube: Kube, env: envmod.Environment, value: str) -> bool:
    """Remove `devjobs.dev/run` if it still says `value`; False when someone changed it
    meanwhile (the newer request is left for the next reconcile)."""
    pointer = "/metadata/annotations/" + v.ANNOTATION_RUN.replace("~", "~0").replace("/", "~1")
    patch = [{"op": "test", "path": pointer, "value": value}, {"op": "remove", "path": pointer}]
    try:
        kube.request(
            "PATCH",
            env_path(env),
            {"fieldManager": v.CONTROLLER_COMPONENT},
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
            "apiVersion": catalyst.API_VERSION,
            "kind": envmod.KIND,
            "name": env.name,
            "namespace": env.namespace,
            "uid": env.uid,
        },
        "reason": event.reason,
        "message": event.message,
        "type": event.type,
        "source": {"component": v.CONTROLLER_COMPONENT},
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


def warn(kube: Kube, env: envmod.Environment, what: str, reason: str, message: str) -> None:
    """A reporting failure: logged, and a Warning Event (once per distinct failure)."""
    log.warning("%s: %s", env.ref, message)
    event = RecordEvent(
        name=naming.dns_label(env.name, "report", suffix=naming.digest(f"{what}\0{message}")),
        reason=reason,
        message=message[:1024],
        type="Warning",
    )
    try:
        record_event(kube, env, event)
    except KubeError as error:
        log.warning("%s: event not recorded: %s", env.ref, error)


def keep_log_tail(kube: Kube, env: envmod.Environment, action: SaveLogTail) -> bool:
    """Read the pod's (init) container logs and keep their tails; False when nothing was
    written (pod gone, or an error, which becomes a Warning Event)."""
    try:
        namespace = env.jobs_namespace
        pod = kube.get(f"{collection_path('v1', 'Pod', namespace)}/{quote(action.pod)}")
        if pod is None:
            return False
        tails = masked_log_tails(kube, namespace, pod)
        owner = {
            "apiVersion": catalyst.API_VERSION,
            "kind": envmod.KIND,
            "metadata": {"name": env.name, "namespace": env.namespace, "uid": env.uid},
        }
        save_log_tail(kube, namespace, owner, action.key, tails, job_name=action.job_name)
    except (DevjobsError, KubeError) as error:
        text = f"log tail of {action.key} (Job {action.job_name}) not kept: {error}"
        warn(kube, env, f"logs/{action.key}", "LogTailNotKept", text)
        return False
    log.info("%s: kept the log tail of %s (Job %s)", env.ref, action.key, action.job_name)
    return True


def _post_key(env: envmod.Environment, action: PostStatus) -> tuple[str, ...]:
    target = action.job_name or f"deployment/{action.workload}"
    return (env.jobs_namespace, target, action.state.key)


def post_status(
    kube: Kube, env: envmod.Environment, github: GitHubStatuses | None, action: PostStatus
) -> bool:
    """Post the commit status and record it where `observe` reads it back; a refusal is
    a warning (the next round tries again), never an error of the round."""
    if github is None:
        return False
    state = action.state
    try:
        posted = post_job_status(github, action.repository_url, state)
    except DevjobsError as error:
        text = f"commit status of {state.key} not posted: {error}"
        what = f"github/{state.key}/{state.commit}/{state.phase.value}"
        warn(kube, env, what, "GitHubStatusFailed", text)
        return False
    github_state: str = state_for(state.phase)
    if action.job_name is not None:
        jobs = collection_path("batch/v1", "Job", env.jobs_namespace)
        path = f"{jobs}/{quote(action.job_name)}"
        annotations = {v.ANNOTATION_GITHUB_STATE: github_state}
    elif action.workload is not None:
        deployments = collection_path("apps/v1", "Deployment", env.jobs_namespace)
        path = f"{deployments}/{quote(action.workload)}"
        annotations = {v.init_github_state_annotation(state.key): f"{github_state}@{state.commit}"}
    else:
        return posted
    record_annotations(kube, env, path, annotations)
    return posted


def record_annotations(
    kube: Kube, env: envmod.Environment, path: str, values: dict[str, str]
) -> None:
    """A JSON merge patch of these annotations only, with the controller's own field
    manager: no other field, no other job's value; on the workload a metadata change
    starts no rollout, and the server-side apply of its init containers never owns (so
    never removes) them. Catalyst does not watch devjobs' Jobs, so this wakes nobody."""
    body = {"metadata": {"annotations": values}}
    try:
        kube.request(
            "PATCH", path, {"fieldManager": v.CONTROLLER_COMPONENT}, body,
            content_type="application/merge-patch+json",
        )  # fmt: skip
    except KubeError as error:
        log.warning("%s: posted state not recorded on %s: %s", env.ref, path, error)


def _check_key(env: envmod.Environment, action: PostCheckRun) -> tuple[str, ...]:
    target = action.job_name or f"deployment/{action.workload}"
    report = action.report
    return (env.jobs_namespace, target, f"{report.source}/{report.job}", report.commit)


def post_check_run(
    kube: Kube, env: envmod.Environment, checks: AppChecks | None, action: PostCheckRun
) -> float | None:
    """Create or update the check run, then record `<id>:<status>` where `observe` reads
    it back. None when posted; else the seconds to wait before trying again (0: not
    posted, the next round decides again). A refusal, a rate limit or 5xx is a Warning
    Event, never an error of the round."""
    if checks is None:
        return 0.0
    report = action.report
    key = _check_key(env, action)
    run_id = action.check_run_id or checks.created_id(key)
    files = checks.files(action.repository_url, report.commit) if report.phase == "Failed" else None
    name = f"{report.source}/{report.job}"
    made: list[int] = []
    try:
        bodies = check_run_requests(
            report, repo_files=files or frozenset(), details_url=action.details_url,
            workspace=action.workspace, now=datetime.now(UTC),
        )  # fmt: skip
        client = checks.client(action.installation_id)

        def created(new_id: int) -> None:
            made.append(new_id)
            checks.created(key, new_id)

        run_id = client.publish(action.repo, bodies, check_run_id=run_id, on_created=created)
    except DevjobsError as error:
        text = f"check run of {name} not posted: {error}"
        what = f"check-run/{name}/{report.commit}/{action.status}"
        warn(kube, env, what, "GitHubCheckRunFailed", text)
        if made:  # created, a later batch failed: keep the id, so the retry updates it
            _record_check_run(kube, env, action, f"{made[0]}:queued")
        return error.wait if isinstance(error, RetryLater) else 0.0
    log.info("%s: check run %s of %s is %s", env.ref, run_id, name, action.status)
    _record_check_run(kube, env, action, f"{run_id}:{action.status}")
    return None


def _record_check_run(
    kube: Kube, env: envmod.Environment, action: PostCheckRun, record: str
) -> None:
    if action.job_name is not None:
        jobs = collection_path("batch/v1", "Job", env.jobs_namespace)
        path = f"{jobs}/{quote(action.job_name)}"
        values = {v.ANNOTATION_CHECK_RUN: record}
    elif action.workload is not None:
        deployments = collection_path("apps/v1", "Deployment", env.jobs_namespace)
        path = f"{deployments}/{quote(action.workload)}"
        key = f"{action.report.source}/{action.report.job}"
        values = {v.init_check_run_annotation(key): f"{record}@{action.report.commit}"}
    else:
        return
    record_annotations(kube, env, path, values)
