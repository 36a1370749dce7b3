"""devjobs' Jobs and log records as observed on the cluster, read back from the labels and
annotations `render` and `logstore` wrote. Pure: API JSON in, frozen data out.

Both writers of an Environment's conditions (`devjobs run` and the controller) read the
Jobs they find through `job_obs`, so both see the same state of every job, and
`newest_at_commit` is the one rule of which run of a job counts for a commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devjobs.kube import naming
from devjobs.kube import vocabulary as v
from devjobs.kube.jobstate import JobState, job_state
from devjobs.resolver import environment as envmod


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class JobObs:
    """A batch/v1 Job devjobs created for an Environment."""

    name: str
    key: str
    trigger: str
    commit: str
    attempt: str
    request_id: str | None
    created: str
    deleting: bool
    state: JobState
    terminal: bool = False
    """The Job itself has ended (Complete or Failed): nothing left to cancel. A Job whose
    pod cannot pull its image is reported Failed but still holds a pod until cancelled."""
    pod: str | None = None
    """Its newest pod (whose logs are kept when the job ends), if it still has one."""
    github_state: str | None = None
    """The GitHub commit state last posted for this Job (its annotation), so a restarted
    controller does not post it again."""
    check_run: str | None = None
    """Its GitHub check run as last posted (`vocabulary.ANNOTATION_CHECK_RUN`)."""


@dataclass(frozen=True)
class LogTail:
    """A kept log record (`logstore` ConfigMap) of one job of an Environment."""

    key: str
    job_name: str
    logs: Mapping[str, str]
    """`<container>.log` -> tail."""

    def main_log(self) -> str:
        """The job's own containers' tails (not the clone's or a setup step's)."""
        own = [k for k in self.logs if not k.startswith(v.INIT_PREFIX)]
        return "\n".join(self.logs[k] for k in own)


def job_obs(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobObs:
    meta = _map(job.get("metadata"))
    labels = _map(meta.get("labels"))
    annotations = _map(meta.get("annotations"))
    request = annotations.get(v.ANNOTATION_REQUEST)
    github_state = annotations.get(v.ANNOTATION_GITHUB_STATE)
    newest_pod = max(
        (
            (
                str(_map(p.get("metadata")).get("creationTimestamp") or ""),
                str(_map(p.get("metadata")).get("name") or ""),
            )
            for p in pods
        ),
        default=(None, None),
    )[1]
    return JobObs(
        name=str(meta.get("name", "")),
        key=str(annotations.get(v.ANNOTATION_JOB_KEY, "")),
        trigger=str(labels.get(v.LABEL_TRIGGER, "")),
        commit=str(annotations.get(v.ANNOTATION_COMMIT, "")),
        attempt=str(annotations.get(v.ANNOTATION_ATTEMPT, "0")),
        request_id=request if isinstance(request, str) else None,
        created=str(meta.get("creationTimestamp") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        state=job_state(job, pods),
        github_state=github_state if isinstance(github_state, str) else None,
        check_run=(
            str(annotations[v.ANNOTATION_CHECK_RUN])
            if isinstance(annotations.get(v.ANNOTATION_CHECK_RUN), str)
            else None
        ),
        terminal=any(
            _map(c).get("type") in ("Complete", "Failed") and _map(c).get("status") == "True"
            for c in _list(_map(job.get("status")).get("conditions"))
        ),
        pod=newest_pod,
    )


def pods_by_job(pods: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Job name -> the pods the Job controller labelled as its own (one pass, however
    many Jobs look theirs up)."""
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        owner = _map(_map(pod.get("metadata")).get("labels")).get(v.JOB_NAME_LABEL)
        if isinstance(owner, str):
            by_job.setdefault(owner, []).append(pod)
    return by_job


def jobs_with_pods(
    jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[JobObs]:
    """`job_obs` of each Job, with its pods."""
    by_job = pods_by_job(pods)
    return [job_obs(j, by_job.get(str(_map(j.get("metadata")).get("name")), [])) for j in jobs]


def newest(jobs: Iterable[JobObs]) -> dict[str, JobObs]:
    """Job key -> its newest run among `jobs` (by creation time, then name)."""
    found: dict[str, JobObs] = {}
    for job in jobs:
        known = found.get(job.key)
        if known is None or (job.created, job.name) > (known.created, known.name):
            found[job.key] = job
    return found


def at_commit(job: JobObs, current: Mapping[str, str]) -> bool:
    """Whether `job` ran at the commit its source is at now (`current`: source -> revision)."""
    source = job.key.partition("/")[0]
    return bool(job.commit) and current.get(source) == job.commit


def environment_label(environment_name: str) -> str:
    """The `LABEL_ENVIRONMENT` value on an Environment's Jobs, pods and log records."""
    return naming.label_value(environment_name)


def belongs_to(obj: Mapping[str, Any], env: envmod.Environment, namespace: str) -> bool:
    """Whether a devjobs Job (or pod) in `namespace` (where the Environment's jobs run) is
    this Environment's: by owner uid when it has an owner, else by the environment label
    and, when it names one, the Environment's namespace annotation."""
    meta = _map(obj.get("metadata"))
    if meta.get("namespace") != namespace:
        return False
    owners = [_map(o) for o in _list(meta.get("ownerReferences"))]
    if env.uid and any(o.get("uid") == env.uid for o in owners):
        return True
    if any(o.get("kind") == envmod.KIND for o in owners):
        return False
    origin = _map(meta.get("annotations")).get(v.ANNOTATION_ENVIRONMENT_NAMESPACE)
    if origin is not None and origin != env.namespace:
        return False
    return _map(meta.get("labels")).get(v.LABEL_ENVIRONMENT) == environment_label(env.name)


def log_tails(
    configmaps: Iterable[Mapping[str, Any]], env: envmod.Environment, namespace: str
) -> dict[str, LogTail]:
    """Job key -> the kept log record of that job of `env` (records live in `namespace`)."""
    tails: dict[str, LogTail] = {}
    for cm in configmaps:
        meta = _map(cm.get("metadata"))
        annotations = _map(meta.get("annotations"))
        if meta.get("namespace") != namespace:
            continue
        if annotations.get(v.ANNOTATION_ENVIRONMENT) != env.name:
            continue
        origin = annotations.get(v.ANNOTATION_ENVIRONMENT_NAMESPACE)
        if origin is not None and origin != env.namespace:
            continue
        key = str(annotations.get(v.ANNOTATION_JOB_KEY) or "")
        if key:
            job_name = str(annotations.get(v.ANNOTATION_LOG_JOB_NAME) or "")
            tails[key] = LogTail(key, job_name, dict(_map(cm.get("data"))))
    return tails
