"""`Manual` jobs: the `devjobs.dev/run` annotation on an Environment asks for them.

The request's Jobs are created, then the request is cleared. Each Job carries the
request's id (`vocabulary.ANNOTATION_REQUEST`) and an attempt derived from it, so a
restart between the two creates nothing twice, and asking again runs them again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from devjobs.controller.actions import Action, ClearManualRequest, CreateJob, RecordEvent
from devjobs.controller.observe import Observed
from devjobs.errors import DevjobsError
from devjobs.kube import naming
from devjobs.kube import vocabulary as v
from devjobs.kube.podspec import RenderOptions
from devjobs.kube.render import find_job, render
from devjobs.resolver.models import JobPlan, RunAs


def attempt_of(request_id: str) -> int:
    """A request's attempt number: never 0 (the lifecycle run), stable for its id."""
    return int(request_id[:7], 16) + 1


def manual_actions(
    observed: Observed, plan: JobPlan, options: RenderOptions, existing: Collection[str]
) -> list[Action]:
    """Create the requested Jobs not created yet, say what could not be run, clear it."""
    request = observed.manual
    if request is None:
        return []
    env = observed.environment
    actions: list[Action] = []
    picked: list[str] = []
    problems: list[str] = []
    for wanted in request.jobs:
        try:
            job = find_job(plan, wanted)
        except DevjobsError as error:
            problems.append(str(error))
            continue
        if job.run_as is not RunAs.JOB:
            problems.append(f"{job.key}: runs as an init container of the workload")
            continue
        picked.append(job.key)
    if picked:
        attempts = {key: attempt_of(request.request_id) for key in picked}
        rendered = render(
            plan, env, dataclasses.replace(options, jobs=tuple(picked), attempts=attempts)
        )
        for made in rendered.jobs:
            if made.name in existing:
                continue
            manifest = dict(made.manifest)
            metadata = dict(manifest["metadata"])
            metadata["annotations"] = {
                **metadata["annotations"],
                v.ANNOTATION_REQUEST: request.request_id,
            }
            manifest["metadata"] = metadata
            actions.append(CreateJob(made.name, manifest))
    if problems or not request.jobs:
        text = "; ".join(problems) or "the request names no job"
        actions.append(
            RecordEvent(
                name=naming.dns_label(env.name, "request", suffix=request.request_id[:10]),
                reason="InvalidRequest",
                message=f"{v.RUN_HINT}{request.value!r}: {text}",
                type="Warning",
            )
        )
    actions.append(ClearManualRequest(request.value))
    return actions
