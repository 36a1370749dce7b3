"""The run path's link to reporting: conditions on the Environment and log records kept
after the pods go, written whenever `follow` sees a job's state change.

The conditions are `kube.conditions.environment_conditions`, as the controller writes
them: `JobsSucceeded` and `PreDeployJobsSucceeded` count every job of the current
commit's plan - this run's jobs, the runs of other jobs already on the cluster at this
commit, and, as Pending, those not run yet - so running one job by hand never makes the
aggregate say more than the Environment's jobs do. Only this run's jobs' own conditions
and the two aggregates are written.

A reporting failure (RBAC on the status subresource, say) does not stop the run: it is
said once on stderr and makes the run exit non-zero, since users look there for results.
GitHub commit statuses (`CommitStatuses`) are a courtesy on top: a failure to post one is
a warning and changes nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from devjobs.errors import DevjobsError
from devjobs.github.statuses import GitHubStatuses, post_job_status
from devjobs.kube.client import Kube, KubeError
from devjobs.kube.conditions import (
    AGGREGATE_TYPE,
    PRE_DEPLOY_GATE,
    EnvironmentJobs,
    commit_label,
    environment_conditions,
    job_condition,
    reported_jobs,
)
from devjobs.kube.jobs import JobObs, at_commit, newest
from devjobs.kube.jobstate import JobState
from devjobs.kube.logstore import masked_log_tails, save_log_tail
from devjobs.kube.podspec import revisions
from devjobs.kube.status import write_conditions
from devjobs.kube.vocabulary import JOB_NAME_LABEL
from devjobs.resolver.environment import Environment
from devjobs.resolver.models import JobPlan, Trigger


@dataclass
class Reporter:
    kube: Kube
    environment: Environment
    env_obj: Mapping[str, Any]
    plan: JobPlan
    others: Sequence[JobObs]
    """devjobs' other Jobs of this Environment (not this run's), as listed at its start."""
    err: TextIO
    manual: bool = False
    """This run's jobs were named (they run as Manual), not a lifecycle point's."""
    failed: bool = False
    _tails: dict[str, dict[str, str]] = field(default_factory=dict)
    _written: dict[str, JobState] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)

    def report(
        self,
        states: Mapping[str, JobState],
        final: bool = False,
        logs_from: Mapping[str, tuple[Mapping[str, Any], Sequence[str]]] | None = None,
    ) -> None:
        """Write the conditions of `states` (state name -> state) and the aggregates, and
        keep the log tail of each that finished: from its Job's newest pod, or for an
        InitContainer job from `logs_from[name]` (the workload pod that ran it, and its
        containers there)."""
        if not final and states == self._written:
            return
        for name, state in states.items():
            if state.phase.finished and name not in self._tails:
                if logs_from is not None and name in logs_from:
                    pod, containers = logs_from[name]
                    self._tails[name] = self._save_pod_logs(state, pod, containers)
                elif state.job_name == name:
                    self._tails[name] = self._save_logs(name, state)
        try:
            write_conditions(
                self.kube,
                self.environment.namespace,
                self.environment.name,
                self.conditions(states),
            )
            self._written = dict(states)
        except DevjobsError as error:
            self._warn("conditions", f"conditions not written: {error}")

    def conditions(self, states: Mapping[str, JobState]) -> list[dict[str, Any]]:
        """This run's jobs' conditions and the aggregates over the Environment's jobs."""
        current = revisions(self.plan, self.environment)
        lifecycle_keys = set(reported_jobs(self.plan))
        ours = {s.key: s for s in states.values()}
        others = [j for j in self.others if at_commit(j, current)]
        is_manual = Trigger.MANUAL.value
        lifecycle = {
            k: j.state for k, j in newest(j for j in others if j.trigger != is_manual).items()
        }
        manual = {
            k: j.state for k, j in newest(j for j in others if j.trigger == is_manual).items()
        }
        for key, state in ours.items():
            if self.manual or key not in lifecycle_keys:
                manual[key] = state
            else:
                lifecycle[key] = state
        tails = {s.key: _main_tail(self._tails.get(name, {})) for name, s in states.items()}
        everything = environment_conditions(
            EnvironmentJobs(
                plan=self.plan,
                generation=self.environment.generation,
                current=current,
                lifecycle={k: s for k, s in lifecycle.items() if k in lifecycle_keys},
                manual=[manual[k] for k in sorted(manual)],
                log_tails=tails,
            )
        )
        # This run's own states, as they are: a job run by name is reported as that
        # run, even when the Environment counts its lifecycle run in the aggregates.
        label = commit_label(current)
        generation = self.environment.generation
        written = [
            job_condition(
                replace(state, message=f"{label}: {state.message}"),
                generation=generation,
                log_tail=tails.get(state.key, "") if state.phase.finished else "",
            )
            for state in sorted(ours.values(), key=lambda s: s.key)
        ]
        aggregates = [c for c in everything if c["type"] in (AGGREGATE_TYPE, PRE_DEPLOY_GATE)]
        return [*written, *aggregates]

    def _save_logs(self, job_name: str, state: JobState) -> dict[str, str]:
        path = f"/api/v1/namespaces/{self.environment.jobs_namespace}/pods"
        try:
            pods = self.kube.list(path, f"{JOB_NAME_LABEL}={job_name}")
            items = sorted(
                pods.get("items") or [],
                key=lambda p: str(p["metadata"].get("creationTimestamp") or ""),
            )
            if not items:
                return {}
            tails = masked_log_tails(self.kube, self.environment.jobs_namespace, items[-1])
            save_log_tail(
                self.kube, self.environment.jobs_namespace, self.env_obj, state.key, tails,
                job_name=job_name,
            )  # fmt: skip
            return tails
        except (DevjobsError, KubeError) as error:
            self._warn(f"logs {state.key}", f"log tail of {state.key} not kept: {error}")
            return {}

    def _save_pod_logs(
        self, state: JobState, pod: Mapping[str, Any], containers: Sequence[str]
    ) -> dict[str, str]:
        try:
            tails = masked_log_tails(
                self.kube, self.environment.jobs_namespace, pod, only=containers
            )
            if tails:
                save_log_tail(
                    self.kube, self.environment.jobs_namespace, self.env_obj, state.key, tails
                )
            return tails
        except (DevjobsError, KubeError) as error:
            self._warn(f"logs {state.key}", f"log tail of {state.key} not kept: {error}")
            return {}

    def _warn(self, key: str, message: str) -> None:
        self.failed = True
        if key not in self._warned:
            self._warned.add(key)
            self.err.write(f"devjobs: warning: {message}\n")
            self.err.flush()


def _main_tail(tails: Mapping[str, str]) -> str:
    """The log of the container that ran last (the job's own, after clone and setup)."""
    return list(tails.values())[-1] if tails else ""


@dataclass
class CommitStatuses:
    """GitHub commit statuses for `devjobs run`: `pending` when a job's Job is created,
    `success`/`failure`/`error` when it ends. A GitHub failure is a warning on `err`
    (once per job), never a job failure."""

    statuses: GitHubStatuses
    repositories: Mapping[str, str | None]
    """Source name -> its repositoryUrl (only GitHub ones get statuses)."""
    err: TextIO
    _warned: set[str] = field(default_factory=set)
    _final: set[str] = field(default_factory=set)

    def created(self, state: JobState) -> None:
        self._post(state)

    def changed(self, states: Mapping[str, JobState]) -> None:
        for name, state in states.items():
            if state.phase.finished and name not in self._final:
                self._final.add(name)
                self._post(state)

    def _post(self, state: JobState) -> None:
        try:
            post_job_status(self.statuses, self.repositories.get(state.source), state)
        except DevjobsError as error:
            if state.key not in self._warned:
                self._warned.add(state.key)
                self.err.write(
                    f"devjobs: warning: commit status of {state.key} not posted: {error}\n"
                )
                self.err.flush()
