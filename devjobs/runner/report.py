"""The run path's link to reporting: conditions on the Environment and log tails kept
after the pods go, written with the reporting modules (`conditions`, `status`,
`logstore`) whenever `follow` sees a job's state change.

A reporting failure (RBAC on the status subresource, say) does not stop the run: it is
said once on stderr and makes the run exit non-zero, since users look there for results.
GitHub commit statuses (`CommitStatuses`) are a courtesy on top: a failure to post one is
a warning and changes nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from devjobs.errors import DevjobsError
from devjobs.kube.client import Kube, KubeError
from devjobs.kube.jobstate import JobState
from devjobs.resolver.environment import Environment

INIT_STATE_PREFIX = "init:"
"""Names of InitContainer jobs' states among the Job-name-keyed states of a run (they
have no Job: their logs come with `logs_from`)."""


@dataclass
class Reporter:
    kube: Kube
    environment: Environment
    env_obj: Mapping[str, Any]
    err: TextIO
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
        """Write the conditions of `states` (state name -> state) and their aggregate, and
        keep the log tail of each that finished: from its Job's newest pod, or for an
        InitContainer job from `logs_from[name]` (the workload pod that ran it, and its
        containers there)."""
        from devjobs.kube.conditions import aggregate_condition, job_condition
        from devjobs.kube.status import write_conditions

        if not final and states == self._written:
            return
        for name, state in states.items():
            if state.phase.finished and name not in self._tails:
                if logs_from is not None and name in logs_from:
                    pod, containers = logs_from[name]
                    self._tails[name] = self._save_pod_logs(state, pod, containers)
                elif not name.startswith(INIT_STATE_PREFIX):
                    self._tails[name] = self._save_logs(name, state)
        generation = self.environment.generation
        desired = [
            job_condition(s, generation=generation, log_tail=_main_tail(self._tails.get(n, {})))
            for n, s in sorted(states.items(), key=lambda item: item[1].key)
        ]
        desired.append(aggregate_condition(list(states.values()), generation=generation))
        try:
            write_conditions(
                self.kube,
                self.environment.namespace,
                self.environment.name,
                desired,
            )
            self._written = dict(states)
        except DevjobsError as error:
            self._warn("conditions", f"conditions not written: {error}")

    def _save_logs(self, job_name: str, state: JobState) -> dict[str, str]:
        from devjobs.kube.logstore import fetch_log_tails, save_log_tail

        path = f"/api/v1/namespaces/{self.environment.namespace}/pods"
        try:
            pods = self.kube.list(path, f"batch.kubernetes.io/job-name={job_name}")
            items = sorted(
                pods.get("items") or [],
                key=lambda p: str(p["metadata"].get("creationTimestamp") or ""),
            )
            if not items:
                return {}
            tails = fetch_log_tails(self.kube, self.environment.namespace, items[-1])
            save_log_tail(self.kube, self.environment.namespace, self.env_obj, state.key, tails)
            return tails
        except (DevjobsError, KubeError) as error:
            self._warn(f"logs {state.key}", f"log tail of {state.key} not kept: {error}")
            return {}

    def _save_pod_logs(
        self, state: JobState, pod: Mapping[str, Any], containers: Sequence[str]
    ) -> dict[str, str]:
        from devjobs.kube.logstore import fetch_log_tails, save_log_tail

        try:
            tails = fetch_log_tails(self.kube, self.environment.namespace, pod, only=containers)
            if tails:
                save_log_tail(
                    self.kube, self.environment.namespace, self.env_obj, state.key,
                    tails,
                )  # fmt: skip
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


GITHUB_TOKEN_VARIABLES = ("DEVJOBS_GITHUB_TOKEN", "GITHUB_TOKEN")
"""Where `devjobs run` finds a token for commit statuses; the first one set wins."""


def github_token(environ: Mapping[str, str]) -> str | None:
    for name in GITHUB_TOKEN_VARIABLES:
        if environ.get(name):
            return environ[name]
    return None


@dataclass
class CommitStatuses:
    """GitHub commit statuses for `devjobs run`: `pending` when a job's Job is created,
    `success`/`failure`/`error` when it ends. A GitHub failure is a warning on `err`
    (once per job), never a job failure."""

    statuses: Any
    """A `github.GitHubStatuses`."""
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
        from devjobs.github.statuses import post_job_status

        try:
            post_job_status(self.statuses, self.repositories.get(state.source), state)
        except DevjobsError as error:
            if state.key not in self._warned:
                self._warned.add(state.key)
                self.err.write(
                    f"devjobs: warning: commit status of {state.key} not posted: {error}\n"
                )
                self.err.flush()
