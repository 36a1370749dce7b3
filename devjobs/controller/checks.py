"""GitHub check runs to post, decided from what the cluster records (pure).

With a GitHub App configured (`Settings.checks`), each job run is a check run
`devjobs/<source>/<job>` on the commit it ran at, instead of a commit status:

- Jobs: the newest Job of each job at each commit (cancelled runs of an old commit
  included). The check run as last posted is kept on the Job
  (`vocabulary.ANNOTATION_CHECK_RUN`: `<id>:<status>[:<conclusion>]`), so a restarted
  controller updates that run (no duplicate) and still sends the final update.
- InitContainer jobs (`initjobs.init_statuses`): the same record on the workload
  Deployment (`vocabulary.init_check_run_annotation`, `...@<commit>`); one whose run is
  not completed when the Environment moves to another commit is completed `cancelled`
  at the old one.
- `queued` (the Job exists), `in_progress` (its pod runs), then `completed`; a status is
  never followed by an earlier one (a retried pod is Pending again: still in progress).
- A finished Job whose log is about to be kept (`reporting.log_tail_actions`) waits one
  round for it, so the completed run carries its log tail and annotations.
- A new run of a job (a re-run from GitHub or a Manual request) is a new Job, so it gets
  a new check run: GitHub shows the newest run of a name, the old one stays as history.

Nothing is posted for a source that is not on github.com, for a Project without a
`githubInstallationId`, or for a commit that is not a full SHA.
"""

from __future__ import annotations

import string
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from devjobs.controller.actions import Action, PostCheckRun
from devjobs.controller.observe import Observed
from devjobs.errors import DevjobsError
from devjobs.github.checks import JobReport, check_run_name, status_and_conclusion
from devjobs.github.reports import job_report
from devjobs.github.statuses import github_repo
from devjobs.kube.jobs import JobObs, at_commit, newest
from devjobs.kube.jobstate import JobState, Phase, declared_state
from devjobs.kube.podspec import revisions
from devjobs.resolver.models import RunAs

_RANK = {"queued": 0, "in_progress": 1, "completed": 2}
URL_FIELDS = frozenset(
    {"namespace", "environment", "repo", "owner", "name", "sha", "context", "source", "job"}
)


@dataclass(frozen=True)
class Record:
    """A check run as last posted: `<id>:<status>[:<conclusion>]`."""

    id: int
    status: str
    """`<status>[:<conclusion>]`."""

    def __str__(self) -> str:
        return f"{self.id}:{self.status}"

    @property
    def rank(self) -> int:
        return _RANK.get(self.status.partition(":")[0], -1)


def parse_record(value: str | None) -> Record | None:
    """A `Record` from its annotation value, None when absent or not one."""
    text = (value or "").strip()
    run_id, _, status = text.partition(":")
    if not run_id.isdigit() or int(run_id) <= 0 or status.partition(":")[0] not in _RANK:
        return None
    return Record(int(run_id), status)


def wanted_status(report: JobReport) -> str:
    """`<status>[:<conclusion>]` of what `report` shows."""
    status, conclusion = status_and_conclusion(report)
    return f"{status}:{conclusion}" if conclusion else status


def check_url_template(template: str) -> None:
    """Raise DevjobsError when `template` names a field `details_url` does not fill."""
    try:
        fields = {n for _, n, _, _ in string.Formatter().parse(template) if n is not None}
    except ValueError as err:
        raise DevjobsError("details URL template", str(err)) from None
    if unknown := fields - URL_FIELDS:
        raise DevjobsError(
            "details URL template",
            f"unknown field(s) {sorted(unknown)}; known: {sorted(URL_FIELDS)}",
        )


def details_url(
    template: str | None, observed: Observed, repo: str, commit: str, source: str, job: str
) -> str | None:
    """The template filled in, every value URL-quoted (`repo` keeps its `/`)."""
    if not template:
        return None
    env = observed.environment
    owner, _, name = repo.partition("/")
    values = {
        "namespace": env.namespace,
        "environment": env.name,
        "repo": repo,
        "owner": owner,
        "name": name,
        "sha": commit,
        "context": check_run_name(source, job),
        "source": source,
        "job": job,
    }
    quoted = {k: urllib.parse.quote(x, safe="/" if k == "repo" else "") for k, x in values.items()}
    try:
        return template.format_map(quoted)
    except (KeyError, ValueError, IndexError):
        return None


def _needs_post(wanted: str, recorded: Record | None) -> bool:
    if recorded is None:
        return True
    rank = _RANK[wanted.partition(":")[0]]
    return rank > recorded.rank or (rank == recorded.rank == 2 and wanted != recorded.status)


def check_run_actions(
    observed: Observed,
    init_statuses: Mapping[str, JobState],
    *,
    ui_url: str | None = None,
    target_url: str | None = None,
) -> list[Action]:
    """The `PostCheckRun`s of this round (see the module doc)."""
    plan = observed.plan
    installation = observed.installation_id
    if plan is None or installation is None:
        return []
    template = ui_url or target_url
    repos = {
        s.name: github_repo(s.repository_url) if s.repository_url else None for s in plan.sources
    }
    urls = {s.name: s.repository_url for s in plan.sources}
    workspaces = {j.key: j.working_dir for j in plan.jobs}
    current = revisions(plan, observed.environment)
    actions: list[Action] = []

    def post(
        state: JobState,
        commit: str,
        log_tail: str,
        recorded: Record | None,
        *,
        job_name: str | None = None,
        workload: str | None = None,
    ) -> None:
        repo = repos.get(state.source)
        report = job_report(state, commit, log_tail)
        if repo is None or report is None:
            return
        wanted = wanted_status(report)
        if not _needs_post(wanted, recorded):
            return
        actions.append(
            PostCheckRun(
                report=report,
                repo=repo,
                installation_id=installation,
                status=wanted,
                check_run_id=recorded.id if recorded is not None else None,
                details_url=details_url(template, observed, repo, commit, state.source, state.job),
                workspace=workspaces.get(state.key),
                job_name=job_name,
                workload=workload,
                repository_url=urls.get(state.source),
            )
        )

    by_commit: dict[tuple[str, str], list[JobObs]] = {}
    for job in observed.jobs:
        if job.commit:
            by_commit.setdefault((job.key, job.commit), []).append(job)
    for (key, commit), runs in sorted(by_commit.items()):
        job = newest(runs)[key]
        kept = observed.log_tails.get(key)
        has_log = kept is not None and kept.job_name == job.name
        if (
            job.state.phase.finished
            and not job.deleting
            and job.pod
            and not has_log
            and at_commit(job, current)
        ):
            continue  # its log is kept this round: the completed run waits for it
        tail = kept.main_log() if kept is not None and has_log else ""
        post(job.state, commit, tail, parse_record(job.check_run), job_name=job.name)

    workload = observed.workload
    if workload is None:
        return actions
    # Runs left at an old commit first: the record then moves to the new commit's.
    for config in plan.jobs:
        if config.run_as is not RunAs.INIT_CONTAINER:
            continue
        recorded = workload.recorded_check_run(config.key)
        now = current.get(config.source)
        if recorded is None or now is None or recorded[0] == now:
            continue
        record = parse_record(recorded[1])
        if record is None or record.rank == _RANK["completed"]:
            continue
        message = "superseded by a newer commit before its init container finished"
        cancelled = declared_state(
            config.source, config.name, Phase.CANCELLED, "Superseded", message, recorded[0]
        )
        post(cancelled, recorded[0], "", record, workload=workload.name)
    for key, state in sorted(init_statuses.items()):
        if not state.commit:
            continue
        recorded = workload.recorded_check_run(key)
        record = parse_record(recorded[1]) if recorded and recorded[0] == state.commit else None
        kept = observed.log_tails.get(key)
        tail = kept.main_log() if kept is not None else ""
        post(state, state.commit, tail, record, workload=workload.name)
    return actions
