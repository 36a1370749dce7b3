"""What the controller reports besides conditions, decided from what the cluster records:
the log records to keep and the GitHub commit statuses to post.

- Log records: each job's newest finished run of this commit has its pod's logs kept
  once (the record names the Job it came from); not when the pod is already gone.
- Commit statuses: for the newest Job of each job at each commit (cancelled runs of an
  old commit included), whenever its GitHub state differs from the one recorded on the
  Job (`vocabulary.ANNOTATION_GITHUB_STATE`); for InitContainer jobs
  (`initjobs.init_statuses`, `initjobs.init_cancelled`), whenever it differs from the
  one recorded on the workload, except that a result once posted is not followed by
  `pending` at the same commit (a replacement pod running the same containers again).
  One status per GitHub state: a pending job's detail changes often, and each change
  would be another request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from devjobs.controller.actions import Action, PostStatus, SaveLogTail
from devjobs.controller.observe import Observed
from devjobs.github.statuses import state_for
from devjobs.kube.jobs import JobObs, at_commit, newest
from devjobs.kube.jobstate import JobState


def log_tail_actions(observed: Observed, current: Mapping[str, str]) -> list[Action]:
    finished = [
        job
        for job in observed.jobs
        if not job.deleting and job.state.phase.finished and at_commit(job, current)
    ]
    actions: list[Action] = []
    for key, job in sorted(newest(finished).items()):
        kept = observed.log_tails.get(key)
        if job.pod and (kept is None or kept.job_name != job.name):
            actions.append(SaveLogTail(job.name, key, job.pod))
    return actions


def status_actions(
    observed: Observed,
    init_statuses: Mapping[str, JobState],
    init_cancelled: Sequence[JobState],
) -> list[Action]:
    plan = observed.plan
    if plan is None:
        return []
    urls = {s.name: s.repository_url for s in plan.sources}
    by_commit: dict[tuple[str, str], list[JobObs]] = {}
    for job in observed.jobs:
        if job.commit:
            by_commit.setdefault((job.key, job.commit), []).append(job)
    actions: list[Action] = []
    for (key, commit), runs in sorted(by_commit.items()):
        job = newest(runs)[key]
        state = job.state if job.state.commit else dataclasses.replace(job.state, commit=commit)
        if job.github_state != state_for(state.phase):
            source = key.partition("/")[0]
            actions.append(PostStatus(state, urls.get(source), job_name=job.name))
    workload = observed.workload
    if workload is None:
        return actions
    for state in [*init_cancelled, *(s for _, s in sorted(init_statuses.items()))]:
        if not state.commit:
            continue
        wanted = state_for(state.phase)
        recorded = workload.github_state(state.key, state.commit)
        if recorded == wanted or (wanted == "pending" and recorded not in (None, "pending")):
            continue
        actions.append(PostStatus(state, urls.get(state.source), workload=workload.name))
    return actions
