"""Pure view models: an Environment's API JSON, its Jobs, pods, log tails and plan in;
the plain, JSON-ready dicts the pages and `/api/v1/` show out (schema:
`schemas/ui-api.schema.json`). No client, no clock (`now` is given), no markup: every
string here is data, rendered as text by the templates and the page script.

States are the issue's: Waiting, Pending, Running, Succeeded, Failed, Cancelled, Blocked.
A job's state comes from its latest Job at the Environment's current commit through
`kube.jobstate.job_state` (never re-derived here); without one, from the Environment's
`Job.<source>.<job>` condition the controller wrote; without that, from the plan
(Waiting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from devjobs.kube.jobs import pods_by_job
from devjobs.ui.cluster import (
    AGGREGATE_TYPE,
    ANNOTATION_COMMIT,
    ANNOTATION_CONTAINERS,
    ANNOTATION_JOB_KEY,
    CLONE_CONTAINER,
    LABEL_TRIGGER,
    LOG_KEY_SUFFIX,
    SETUP_PREFIX,
    TYPE_PREFIX,
    JobState,
    Snapshot,
    job_state,
)

STATES = ("Waiting", "Pending", "Running", "Succeeded", "Failed", "Cancelled", "Blocked")

REASON_WORDS = {
    "OOMKilled": "killed: it used more memory than its limit",
    "DeadlineExceeded": "stopped: the job ran longer than its timeout",
    "BackoffLimitExceeded": "failed on every attempt it was allowed",
    "ImagePullBackOff": "the image cannot be pulled (retrying)",
    "ErrImagePull": "the image cannot be pulled",
    "ErrImageNeverPull": "the image is not on the node and may not be pulled",
    "InvalidImageName": "the image name is invalid",
    "CreateContainerConfigError": "the container's configuration is invalid "
    "(a missing Secret or ConfigMap?)",
    "ContainerCannotRun": "the container's command could not be started",
    "StartError": "the container's command could not be started",
    "PodInitializing": "waiting for the steps before it",
    "ContainerCreating": "being created",
    "Evicted": "the pod was evicted from its node",
}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _map(obj.get("metadata"))


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else ""


def duration(started: datetime | None, finished: datetime | None, now: datetime) -> str:
    """`1m05s`-style time from start to end (or to `now` while it runs)."""
    if started is None:
        return ""
    seconds = max(0, int(((finished or now) - started).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def current_commits(env: Mapping[str, Any]) -> dict[str, str]:
    """Source name -> the commit the Environment pins it to."""
    return {
        str(_map(s).get("name")): str(_map(s).get("commitSha") or "")
        for s in _list(_map(env.get("spec")).get("sources"))
        if _map(s).get("name")
    }


def state_from_condition(cond: Mapping[str, Any]) -> str:
    """A `Job.<source>.<job>` condition's state in the issue's words."""
    reason = str(cond.get("reason") or "")
    status = cond.get("status")
    if reason in ("Waiting", "Blocked", "Cancelled"):
        return reason
    if status == "True":
        return "Succeeded"
    if status == "False":
        return "Failed"
    return "Running" if reason == "Running" else "Pending"


def job_conditions(env: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """`source/job` -> its condition on the Environment."""
    found: dict[str, Mapping[str, Any]] = {}
    for cond in _list(_map(env.get("status")).get("conditions")):
        ctype = str(_map(cond).get("type") or "")
        if ctype.startswith(TYPE_PREFIX):
            source, _, job = ctype[len(TYPE_PREFIX) :].partition(".")
            if job:
                found[f"{source}/{job}"] = cond
    return found


def _created(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))


def pods_of(
    job: Mapping[str, Any], pods: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[Mapping[str, Any]]:
    """The Job's pods, from `kube.jobs.pods_by_job` (indexed once per snapshot: a page
    of 500 Jobs would otherwise scan every pod for every Job)."""
    return list(pods.get(str(_meta(job).get("name") or ""), []))


def _run(job: Mapping[str, Any], state: JobState, now: datetime) -> dict[str, Any]:
    return {
        "jobName": str(_meta(job).get("name") or ""),
        "commit": state.commit or "",
        "state": state.phase.value,
        "reason": state.reason,
        "message": state.message,
        "exitCode": state.exit_code,
        "started": _time(state.started),
        "finished": _time(state.finished),
        "duration": duration(state.started, state.finished, now),
        "trigger": str(_map(_meta(job).get("labels")).get(LABEL_TRIGGER) or ""),
    }


def _origin(plan_job: Any) -> str:
    origins = getattr(plan_job, "origins", None) or []
    return " < ".join(f"{o.file}#{o.pointer}" for o in origins)


def job_rows(snapshot: Snapshot, now: datetime) -> list[dict[str, Any]]:
    """One row per job of the Environment, in plan order (then jobs only the cluster
    knows), each with its earlier commits' runs still on the cluster."""
    env = snapshot.environment
    commits = current_commits(env)
    conditions = job_conditions(env)
    pods = pods_by_job(snapshot.pods)
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for job in snapshot.jobs:
        key = _map(_meta(job).get("annotations")).get(ANNOTATION_JOB_KEY)
        if isinstance(key, str) and "/" in key:
            by_key.setdefault(key, []).append(job)
    plan_jobs: dict[str, Any] = {}
    if snapshot.plan is not None:
        plan_jobs = {j.key: j for j in snapshot.plan.jobs}
    keys = list(plan_jobs) + sorted((set(by_key) | set(conditions)) - set(plan_jobs))
    rows = []
    for key in keys:
        source, _, name = key.partition("/")
        planned = plan_jobs.get(key)
        commit = commits.get(source, "")
        runs = sorted(by_key.get(key, []), key=_created, reverse=True)
        current = [j for j in runs if not commit or _annotation(j, ANNOTATION_COMMIT) == commit]
        earlier = [j for j in runs if j not in current]
        trigger = planned.trigger.value if planned is not None else ""
        runs_as = planned.run_as.value if planned is not None else ""
        row: dict[str, Any] = {
            "key": key,
            "source": source,
            "job": name,
            "trigger": trigger,
            "runsAs": runs_as,
            "origin": _origin(planned),
            "commit": commit,
            "jobName": "",
            "state": "Waiting",
            "reason": "",
            "message": "",
            "exitCode": None,
            "started": "",
            "finished": "",
            "duration": "",
        }
        if current:
            latest = current[0]
            state = job_state(latest, pods_of(latest, pods))
            row.update(_run(latest, state, now))
            row["trigger"] = trigger or row["trigger"]
            row["commit"] = commit or row["commit"]
        elif key in conditions:
            cond = conditions[key]
            row["state"] = state_from_condition(cond)
            row["reason"] = str(cond.get("reason") or "")
            row["message"] = str(cond.get("message") or "").split("\n", 1)[0]
        elif trigger == "Manual":
            row["reason"] = "Manual"
            row["message"] = "runs when asked (Run)"
        if not trigger and not runs_as and current:
            row["trigger"] = str(_map(_meta(current[0]).get("labels")).get(LABEL_TRIGGER) or "")
        row["manual"] = trigger == "Manual"
        row["runnable"] = runs_as in ("", "Job") and row["state"] not in ("Pending", "Running")
        row["runLabel"] = "Run" if row["manual"] and not current else "Rerun"
        if not row["manual"] and row["state"] not in ("Succeeded", "Failed", "Cancelled"):
            row["runnable"] = False
        row["earlierRuns"] = [_run(j, job_state(j, pods_of(j, pods)), now) for j in earlier]
        rows.append(row)
    return rows


def _annotation(obj: Mapping[str, Any], key: str) -> str:
    return str(_map(_meta(obj).get("annotations")).get(key) or "")


def counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    found = {state: 0 for state in STATES}
    for row in rows:
        found[str(row["state"])] = found.get(str(row["state"]), 0) + 1
    return {state: n for state, n in found.items() if n}


def environment_summary(
    snapshot: Snapshot, rows: Sequence[Mapping[str, Any]], can_run: bool
) -> dict[str, Any]:
    env = snapshot.environment
    meta = _meta(env)
    aggregate: Mapping[str, Any] = {}
    for cond in _list(_map(env.get("status")).get("conditions")):
        if _map(cond).get("type") == AGGREGATE_TYPE:
            aggregate = cond
    return {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "phase": str(_map(env.get("status")).get("phase") or ""),
        "commits": [
            {"source": source, "commit": commit} for source, commit in current_commits(env).items()
        ],
        "jobsSucceeded": {
            "status": str(aggregate.get("status") or "Unknown"),
            "reason": str(aggregate.get("reason") or ""),
            "message": str(aggregate.get("message") or "").split("\n", 1)[0],
        },
        "counts": counts(rows),
        "canRun": can_run,
        "planError": snapshot.plan_error,
    }


def container_words(status: Mapping[str, Any] | None) -> tuple[str, int | None, str]:
    """(state, exit code, what happened in words) of one container status."""
    if not status:
        return "Waiting", None, "not started"
    state = _map(status.get("state"))
    last = _map(_map(status.get("lastState")).get("terminated"))
    if "terminated" in state:
        term = _map(state.get("terminated"))
        code = term.get("exitCode") if isinstance(term.get("exitCode"), int) else None
        reason = str(term.get("reason") or "")
        if code == 0:
            return "Succeeded", 0, "completed (exit code 0)"
        words = f"exited with code {code}"
        if reason and reason not in ("Error", "Completed"):
            words += f": {reason} ({REASON_WORDS.get(reason, reason)})"
        if term.get("message"):
            words += f": {term.get('message')}"
        return "Failed", code, words
    if "running" in state:
        since = str(_map(state.get("running")).get("startedAt") or "")
        words = f"running since {since}" if since else "running"
        if last.get("exitCode"):
            words += f" (the last attempt exited with code {last.get('exitCode')})"
        return "Running", None, words
    waiting = _map(state.get("waiting"))
    reason = str(waiting.get("reason") or "")
    words = REASON_WORDS.get(reason, reason or "waiting")
    if reason and reason not in REASON_WORDS:
        words = f"waiting: {reason}"
    elif reason:
        words = f"{reason}: {words}"
    if waiting.get("message"):
        words += f": {waiting.get('message')}"
    return "Waiting", None, words


def container_kind(name: str, init: bool) -> str:
    if name == CLONE_CONTAINER:
        return "clone"
    if name.startswith(SETUP_PREFIX):
        return "setup"
    return "init" if init else "job"


def containers(job: Mapping[str, Any], pod: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Each container of the run in the order they run (clone, setup steps, the job):
    state, exit code and the reason in words; from the pod while it exists, else the
    names from the Job's template with what the Job still says."""
    spec = (
        _map(pod.get("spec"))
        if pod is not None
        else _map(_map(_map(job.get("spec")).get("template")).get("spec"))
    )
    status = _map(pod.get("status")) if pod is not None else {}
    statuses = {
        str(_map(s).get("name")): _map(s)
        for field in ("initContainerStatuses", "containerStatuses")
        for s in _list(status.get(field))
    }
    found = []
    for field, init in (("initContainers", True), ("containers", False)):
        for container in _list(spec.get(field)):
            name = str(_map(container).get("name") or "")
            if pod is not None:
                state, code, words = container_words(statuses.get(name))
            else:
                state, code, words = "", None, "its pod is gone"
            found.append(
                {
                    "name": name,
                    "kind": container_kind(name, init),
                    "state": state,
                    "exitCode": code,
                    "words": words,
                }
            )
    return found


def job_detail(
    snapshot: Snapshot, key: str, now: datetime, run: str | None = None
) -> dict[str, Any] | None:
    """One job's page: its row, the run shown (the latest, or the Job named `run`), its
    containers, and where its log comes from: the pod while it exists (`live`, followed
    by `/api/v1/.../log?follow=1`), else the tail devjobs kept (`retained`)."""
    rows = {r["key"]: r for r in job_rows(snapshot, now)}
    row = rows.get(key)
    if row is None:
        return None
    runs = sorted(
        (j for j in snapshot.jobs if _annotation(j, ANNOTATION_JOB_KEY) == key),
        key=_created,
        reverse=True,
    )
    chosen = next((j for j in runs if _meta(j).get("name") == (run or row["jobName"])), None)
    pod: Mapping[str, Any] | None = None
    detail: dict[str, Any] = dict(row)
    detail["containers"] = []
    detail["pod"] = ""
    detail["logSource"] = "none"
    detail["retained"] = []
    if chosen is not None:
        pods = sorted(pods_of(chosen, pods_by_job(snapshot.pods)), key=_created)
        live = [p for p in pods if not _meta(p).get("deletionTimestamp")] or pods
        pod = live[-1] if live else None
        detail.update(_run(chosen, job_state(chosen, pods), now))
        detail["containers"] = containers(chosen, pod)
        detail["mainContainers"] = [
            c for c in _annotation(chosen, ANNOTATION_CONTAINERS).split(",") if c
        ]
        if pod is not None:
            detail["pod"] = str(_meta(pod).get("name") or "")
            detail["logSource"] = "live"
    if detail["logSource"] == "none":
        tail = retained_log(snapshot.log_tails, key)
        if tail:
            detail["logSource"] = "retained"
            detail["retained"] = tail
            if not detail["containers"]:
                detail["containers"] = [
                    {"name": c["container"], "kind": "job", "state": "", "exitCode": None,
                     "words": "its pod is gone"}
                    for c in tail
                ]  # fmt: skip
    return detail


def retained_log(configmaps: Sequence[Mapping[str, Any]], key: str) -> list[dict[str, str]]:
    """The log tail devjobs kept for job `key`: [{container, text}], or []."""
    for cm in configmaps:
        if _annotation(cm, ANNOTATION_JOB_KEY) != key:
            continue
        data = _map(cm.get("data"))
        return [
            {"container": str(k).removesuffix(LOG_KEY_SUFFIX), "text": str(v)}
            for k, v in sorted(data.items())
        ]
    return []


def log_containers(detail: Mapping[str, Any]) -> list[str]:
    """The containers whose logs the job page follows, in the order they run."""
    return [str(c["name"]) for c in detail.get("containers") or []]
