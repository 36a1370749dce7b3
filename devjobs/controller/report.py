"""The controller's reporting beyond conditions, as `devjobs run` does it: log tails that
outlive the pods (`kube.logstore`) and GitHub commit statuses (`github.statuses`).

Neither may fail a job or stop a reconcile: a log tail that cannot be kept or a status
GitHub refuses is logged and recorded once as a Warning Event on the Environment, and
the next reconcile of that Environment tries again (GitHub: only when the state changed;
`GitHubStatuses` drops repeats of what this process already posted).

Statuses are posted for the Jobs devjobs created and, as `devjobs run` does, for the
`runAs: InitContainer` jobs (`decide.Decision.init_statuses`): `pending` once the workload
patch carrying the job is applied, then its init container's result; `error` at the old
commit when the Environment moves on while it is still `pending`
(`decide.Decision.init_cancelled`), as for an unfinished Job. What was posted is
kept in the cluster, where a restarted controller finds it: on the Job (one Job per
commit), and for an InitContainer job, which has no object of its own, on the workload
Deployment that runs it (`observe.init_github_state_annotation`, `<state>@<commit>`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from devjobs.controller.decide import RecordEvent, SaveLogTail
from devjobs.controller.observe import (
    GITHUB_STATE_ANNOTATION,
    LOG_JOB_ANNOTATION,
    JobObs,
    Observed,
    init_github_state_annotation,
)
from devjobs.errors import DevjobsError
from devjobs.github.statuses import GitHubStatuses, post_job_status, state_for
from devjobs.kube import naming
from devjobs.kube.client import Kube, KubeError
from devjobs.kube.jobstate import JobState
from devjobs.resolver import environment as envmod

log = logging.getLogger("devjobs.controller")

TOKEN_ENV = "DEVJOBS_GITHUB_TOKEN"
"""The token, from a Secret (`deploy/deployment.yaml`: secret `devjobs-github`, key
`token`, optional). Never a flag: flags show in `ps` and in the pod spec."""


def github_from_env(
    api_url: str = "https://api.github.com", target_url: str | None = None
) -> GitHubStatuses | None:
    """A client when `DEVJOBS_GITHUB_TOKEN` is set (and not empty), else None. Short
    waits: a rate limit longer than 10s is reported, not slept through in a worker."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        return None
    return GitHubStatuses(
        token, api_url=api_url, target_url_template=target_url, max_retries=2, max_wait=10.0
    )


@dataclass
class Reporting:
    github: GitHubStatuses | None = None
    posted: int = 0
    _warned: set[str] = field(default_factory=set)
    _posted_states: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)
    """(Environment, job key, commit) -> (Job, GitHub state) last posted."""

    # -- log tails

    def save_log_tail(self, kube: Kube, env: envmod.Environment, action: SaveLogTail) -> bool:
        """Read the pod's (init) container logs and keep their tails; False when nothing
        was written (pod gone, or an error, which becomes a Warning Event)."""
        from devjobs.kube.logstore import fetch_log_tails, log_configmap

        try:
            pod = kube.get(f"/api/v1/namespaces/{quote(env.namespace)}/pods/{quote(action.pod)}")
            if pod is None:
                return False
            tails = fetch_log_tails(kube, env.namespace, pod)
            owner = {
                "apiVersion": envmod.API_VERSION,
                "kind": envmod.KIND,
                "metadata": {"name": env.name, "namespace": env.namespace, "uid": env.uid},
            }
            body = log_configmap(env.namespace, owner, action.key, tails)
            body["metadata"]["annotations"][LOG_JOB_ANNOTATION] = action.job_name
            kube.apply(body)
        except (DevjobsError, KubeError) as error:
            text = f"log tail of {action.key} (Job {action.job_name}) not kept: {error}"
            self._warn(kube, env, f"logs/{action.key}", "LogTailNotKept", text)
            return False
        log.info("%s: kept the log tail of %s (Job %s)", env.ref, action.key, action.job_name)
        return True

    # -- GitHub

    def post_statuses(
        self,
        kube: Kube,
        observed: Observed,
        init_states: Mapping[str, JobState] | None = None,
        init_cancelled: Sequence[JobState] = (),
    ) -> int:
        """A commit status per job of the current commit (its newest run), per cancelled
        run of an older commit, per InitContainer job left `pending` at an older commit
        (`init_cancelled`), and per InitContainer job of `init_states` (job key -> state
        with its commit); returns how many requests were made."""
        if self.github is None or observed.plan is None:
            return 0
        env = observed.environment
        urls = {s.name: s.repository_url for s in observed.plan.sources}
        newest: dict[tuple[str, str], JobObs] = {}
        for job in observed.jobs:
            if not job.commit:
                continue
            known = newest.get((job.key, job.commit))
            if known is None or (job.created, job.name) > (known.created, known.name):
                newest[(job.key, job.commit)] = job
        made = 0
        for (key, commit), job in sorted(newest.items()):
            state = job.state
            if state.commit is None:
                state = _with_commit(state, commit)
            # One status per GitHub state: a pending job's detail (waiting for a pod,
            # running, its pod done before the Job is) changes often, and each change
            # would be another request.
            seen = (env.ref, key, commit)
            github_state = state_for(state.phase)
            if self._posted_states.get(seen) == (job.name, github_state):
                continue
            if job.github_state == github_state:
                # Posted before this process started (the Job's annotation says so).
                self._posted_states[seen] = (job.name, github_state)
                continue
            try:
                if post_job_status(self.github, urls.get(key.partition("/")[0]), state):
                    made += 1
                    _record_posted(kube, env, job.name, github_state)
                self._posted_states[seen] = (job.name, github_state)
            except DevjobsError as error:
                text = f"commit status of {key} not posted: {error}"
                what = f"github/{key}/{commit}/{state.phase.value}"
                self._warn(kube, env, what, "GitHubStatusFailed", text)
        init = [*init_cancelled, *(state for _, state in sorted((init_states or {}).items()))]
        made += self._post_init_statuses(kube, observed, init, urls)
        self.posted += made
        return made

    def _post_init_statuses(
        self,
        kube: Kube,
        observed: Observed,
        init_states: Sequence[JobState],
        urls: Mapping[str, str | None],
    ) -> int:
        """The InitContainer jobs' statuses: one per GitHub state and commit, kept on the
        workload Deployment. Once a result (success, failure) is posted, a later `pending`
        of the same commit is not: that is a replacement pod running the same containers
        again, and GitHub keeps showing the result until a different one comes."""
        env = observed.environment
        workload = observed.workload
        if workload is None:
            return 0
        marker = f"deployment/{workload.name}"
        made = 0
        for state in init_states:
            key, commit = state.key, state.commit
            if not commit:
                continue
            seen = (env.ref, key, commit)
            github_state = state_for(state.phase)
            last = self._posted_states.get(seen)
            if last is None or last[0] != marker:
                recorded = workload.github_state(key, commit)
                if recorded is not None:
                    # Posted before this process started (the Deployment says so).
                    last = (marker, recorded)
                    self._posted_states[seen] = last
            if last is not None and last[0] == marker:
                repeat = last[1] == github_state
                rerun = github_state == "pending" and last[1] != "pending"
                if repeat or rerun:
                    continue
            try:
                if post_job_status(self.github, urls.get(state.source), state):
                    made += 1
                    _record_init_posted(kube, env, workload.name, key, commit, github_state)
                self._posted_states[seen] = (marker, github_state)
            except DevjobsError as error:
                text = f"commit status of {key} not posted: {error}"
                what = f"github/{key}/{commit}/{state.phase.value}"
                self._warn(kube, env, what, "GitHubStatusFailed", text)
        return made

    def _warn(
        self, kube: Kube, env: envmod.Environment, key: str, reason: str, message: str
    ) -> None:
        log.warning("%s: %s", env.ref, message)
        if f"{env.ref}\0{key}" in self._warned:
            return  # one Event per failure, not one per reconcile
        self._warned.add(f"{env.ref}\0{key}")
        from devjobs.controller.act import record_event

        event = RecordEvent(
            name=naming.dns_label(env.name, "report", suffix=naming.digest(f"{key}\0{message}")),
            reason=reason,
            message=message[:1024],
            type="Warning",
        )
        try:
            record_event(kube, env, event)
        except KubeError as error:
            log.warning("%s: event not recorded: %s", env.ref, error)


def _record_posted(kube: Kube, env: envmod.Environment, job_name: str, state: str) -> None:
    """Keep the posted state on the Job, where a restarted controller finds it. A merge
    patch of one annotation: Catalyst does not watch devjobs' Jobs, so this wakes nobody."""
    path = f"/apis/batch/v1/namespaces/{quote(env.namespace)}/jobs/{quote(job_name)}"
    body = {"metadata": {"annotations": {GITHUB_STATE_ANNOTATION: state}}}
    try:
        kube.request("PATCH", path, body=body, content_type="application/merge-patch+json")
    except KubeError as error:
        log.warning("%s: GitHub state of Job %s not recorded: %s", env.ref, job_name, error)


def _record_init_posted(
    kube: Kube, env: envmod.Environment, workload: str, key: str, commit: str, state: str
) -> None:
    """Keep an InitContainer job's posted state on the workload Deployment: a JSON merge
    patch of that job's annotation only (no other field, no other job's value; a
    metadata change, so no new rollout). Its own field manager: the server-side apply of
    the init containers does not own it and never removes it."""
    from devjobs.controller.act import COMPONENT

    path = f"/apis/apps/v1/namespaces/{quote(env.namespace)}/deployments/{quote(workload)}"
    body = {"metadata": {"annotations": {init_github_state_annotation(key): f"{state}@{commit}"}}}
    try:
        kube.request(
            "PATCH", path, {"fieldManager": COMPONENT}, body,
            content_type="application/merge-patch+json",
        )  # fmt: skip
    except KubeError as error:
        log.warning("%s: GitHub state of %s not recorded on %s: %s", env.ref, key, workload, error)


def _with_commit(state: JobState, commit: str) -> JobState:
    return dataclasses.replace(state, commit=commit)


__all__ = ["TOKEN_ENV", "Reporting", "github_from_env"]
