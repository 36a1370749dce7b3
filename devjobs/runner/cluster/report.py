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
a warning and changes nothing else. With a GitHub App (`GitHubAppRun`) and an
installation (`--github-installation-id`, else the Project's `githubInstallationId`),
each job is a check run instead (`CheckRunReports`, the same interface and rules): the
payloads are `github.checks`', as the controller's, from `github.reports.job_report`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from devjobs.catalyst import installation_id
from devjobs.errors import DevjobsError
from devjobs.github.app import GitHubApp
from devjobs.github.checks import (
    CheckRuns,
    check_run_name,
    check_run_requests,
    status_and_conclusion,
)
from devjobs.github.reports import job_report
from devjobs.github.statuses import GitHubStatuses, fill_target_url, github_repo, post_job_status
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
from devjobs.resolver.files import repository_files
from devjobs.resolver.models import JobPlan, Trigger
from devjobs.resolver.project import read_resources


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

    def log_tail(self, name: str) -> str:
        """The masked log tail kept for the state `name` (its main container's), or ""."""
        return _main_tail(self._tails.get(name, {}))

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


class JobReports(Protocol):
    """What `run_on_cluster` tells GitHub: a job's Job was created, states changed."""

    def created(self, state: JobState) -> None: ...

    def changed(self, states: Mapping[str, JobState]) -> None: ...


@dataclass(frozen=True)
class GitHubAppRun:
    """`devjobs run`'s GitHub App (`$DEVJOBS_GITHUB_APP_ID`, `$DEVJOBS_GITHUB_APP_KEY_FILE`)."""

    app: GitHubApp
    api_url: str = "https://api.github.com"
    installation_id: int | None = None
    """`--github-installation-id`; None: the Project's `spec.githubInstallationId`."""
    target_url: str | None = None
    """`--target-url`: each check run's `details_url`."""


_RANK = {"queued": 0, "in_progress": 1, "completed": 2}


@dataclass
class CheckRunReports:
    """GitHub check runs `devjobs/<source>/<job>` for `devjobs run`, as one installation
    of the App: `queued` when a job's Job is created, `in_progress` once its pod runs,
    `completed` with its conclusion, the summary and, as text, the masked log tail the
    `Reporter` kept (`log_tail`: state name -> that tail). A status is never followed
    by an earlier one; a GitHub failure is a warning on `err` (once per job), never a
    job failure. Annotations name files of the commit from the resolver's git cache
    (`repo_files`); a source run from a local directory has none there."""

    client: CheckRuns
    repositories: Mapping[str, str | None]
    """Source name -> its repositoryUrl (only GitHub ones get check runs)."""
    err: TextIO
    log_tail: Callable[[str], str] = lambda name: ""
    target_url: str | None = None
    workspaces: Mapping[str, str] = field(default_factory=dict)
    """Job key -> its workingDir (log paths under it name repository files)."""
    repo_files: Callable[[str, str], frozenset[str]] = lambda url, commit: frozenset()
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    _runs: dict[str, tuple[int | None, str]] = field(default_factory=dict)
    """Job key -> (check run id, `<status>[:<conclusion>]` last posted): a run has one
    Job (or init container) per job, named by its Job or by `init_state_name`."""
    _warned: set[str] = field(default_factory=set)

    def created(self, state: JobState) -> None:
        self._post(state.job_name or "", state)

    def changed(self, states: Mapping[str, JobState]) -> None:
        for name, state in states.items():
            self._post(name, state)

    def _post(self, name: str, state: JobState) -> None:
        url = self.repositories.get(state.source)
        repo = github_repo(url) if url else None
        if repo is None or not state.commit:
            return
        tail = self.log_tail(name) if state.phase.finished else ""
        report = job_report(state, state.commit, tail)
        if report is None:
            return
        status, conclusion = status_and_conclusion(report)
        wanted = f"{status}:{conclusion}" if conclusion else status
        run_id, posted = self._runs.get(state.key, (None, ""))
        if posted and _RANK[status] <= _RANK[posted.partition(":")[0]]:
            return  # posted already, or an earlier status (a retried pod is Pending again)
        failed = report.phase == "Failed"
        files = self.repo_files(url, state.commit) if url and failed else frozenset()
        link = self._details_url(repo, state.commit, check_run_name(state.source, state.job))
        try:
            bodies = check_run_requests(
                report, repo_files=files, details_url=link,
                workspace=self.workspaces.get(state.key), now=self.now(),
            )  # fmt: skip

            def made(new_id: int) -> None:
                self._runs[state.key] = (new_id, "queued")

            run_id = self.client.publish(repo, bodies, check_run_id=run_id, on_created=made)
        except DevjobsError as error:
            if state.key not in self._warned:
                self._warned.add(state.key)
                self.err.write(f"devjobs: warning: check run of {state.key} not posted: {error}\n")
                self.err.flush()
            return
        self._runs[state.key] = (run_id, wanted)

    def _details_url(self, repo: str, sha: str, context: str) -> str | None:
        return fill_target_url(self.target_url, repo, sha, context) if self.target_url else None


def job_reports(
    statuses: GitHubStatuses | None,
    app: GitHubAppRun | None,
    plan: JobPlan,
    reporter: Reporter,
    err: TextIO,
    *,
    project_file: Path | None = None,
    cache_dir: Path | None = None,
) -> JobReports | None:
    """Check runs with an App and an installation (`app.installation_id`, else the
    Project file's `githubInstallationId`), else commit statuses with a token, else
    nothing."""
    repositories = {s.name: s.repository_url for s in plan.sources}
    installation = None
    if app is not None:
        installation = app.installation_id or _project_installation(project_file)
        if installation is None:
            instead = "commit statuses instead" if statuses is not None else "nothing is posted"
            err.write(
                "devjobs: warning: a GitHub App is configured but no installation id is "
                "known (--github-installation-id, or the Project's githubInstallationId): "
                f"no check runs, {instead}\n"
            )
            err.flush()
    if app is not None and installation is not None:
        client = CheckRuns(
            app.app.installation(installation), api_url=app.api_url, max_retries=2, max_wait=10.0
        )
        return CheckRunReports(
            client, repositories, err, log_tail=reporter.log_tail, target_url=app.target_url,
            workspaces={j.key: j.working_dir for j in plan.jobs},
            repo_files=lambda url, commit: repository_files(url, commit, cache_dir),
        )  # fmt: skip
    if statuses is not None:
        return CommitStatuses(statuses, repositories, err=err)
    return None


def _project_installation(project_file: Path | None) -> int | None:
    if project_file is None:
        return None
    project = read_resources(project_file, None).project
    return installation_id(project.document.value) if project is not None else None
