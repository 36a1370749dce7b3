"""The run path's link to reporting: conditions on the Environment and log tails kept
after the pods go, written with the reporting modules (`conditions`, `status`,
`logstore`) whenever `follow` sees a job's state change.

A reporting failure (RBAC on the status subresource, say) does not stop the run: it is
said once on stderr and makes the run exit non-zero, since users look there for results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from devjobs.errors import DevjobsError
from devjobs.runner.environment import Environment
from devjobs.runner.jobstate import JobState
from devjobs.runner.kubeapi import Kube, KubeError


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

    def report(self, states: Mapping[str, JobState], final: bool = False) -> None:
        from devjobs.runner.conditions import aggregate_condition, job_condition
        from devjobs.runner.status import write_conditions

        if not final and states == self._written:
            return
        for name, state in states.items():
            if state.phase.finished and name not in self._tails:
                self._tails[name] = self._save_logs(name, state)
        generation = self.environment.generation
        desired = [
            job_condition(s, generation=generation, log_tail=_main_tail(self._tails.get(n, {})))
            for n, s in sorted(states.items(), key=lambda item: item[1].key)
        ]
        desired.append(aggregate_condition(list(states.values()), generation=generation))
        try:
            write_conditions(
                self.kube.api_client,
                self.environment.namespace,
                self.environment.name,
                desired,
            )
            self._written = dict(states)
        except DevjobsError as error:
            self._warn("conditions", f"conditions not written: {error}")

    def _save_logs(self, job_name: str, state: JobState) -> dict[str, str]:
        from devjobs.runner.logstore import fetch_log_tails, save_log_tail

        path = f"/api/v1/namespaces/{self.environment.namespace}/pods"
        try:
            pods = self.kube.list(path, f"batch.kubernetes.io/job-name={job_name}")
            items = sorted(
                pods.get("items") or [],
                key=lambda p: str(p["metadata"].get("creationTimestamp") or ""),
            )
            if not items:
                return {}
            tails = fetch_log_tails(self.kube.api_client, self.environment.namespace, items[-1])
            save_log_tail(
                self.kube.api_client, self.environment.namespace, self.env_obj, state.key, tails
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
