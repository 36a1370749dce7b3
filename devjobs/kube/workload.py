"""`runAs: InitContainer` jobs as init containers of the environment's workload.

The patch is a server-side apply configuration of the Deployment holding only the init
containers and volumes devjobs wants. Applied with devjobs' own field manager it is
idempotent (the same patch twice changes nothing, so no rollout), and an init container
devjobs applied before and leaves out now is removed by the API server, while init
containers, volumes and fields owned by anyone else are untouched.

Each source's InitContainer jobs run after a clone of the source (when it has a
repository) and the setup steps they ask for, each step once per source.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from devjobs.kube import naming, workspace
from devjobs.kube import vocabulary as v
from devjobs.kube.images import resolve_image
from devjobs.kube.jobstate import InitJob, spec_subset
from devjobs.kube.podspec import (
    RenderOptions,
    container_security,
    entries,
    revision_of,
    source_info,
    step_containers,
)
from devjobs.kube.workspace import GitCredentials
from devjobs.resolver.environment import Environment
from devjobs.resolver.models import JobPlan, RunAs

PREFIX = v.WORKLOAD_NAME_PREFIX


def init_jobs(plan: JobPlan, environment: Environment | None = None) -> list[InitJob]:
    """The plan's `runAs: InitContainer` jobs with the names their containers get in the
    workload (as `render_workload_patch` names them) and, given the Environment, the
    commit each runs at."""
    result = []
    for job in plan.jobs:
        if job.run_as is not RunAs.INIT_CONTAINER:
            continue
        prefix = naming.dns_label(PREFIX, job.source)
        names = tuple(
            naming.container_name(*([prefix, job.name, suffix] if suffix else [prefix, job.name]))
            for suffix, _ in entries(job)
        )
        commit = revision_of(plan, environment, job.source) if environment else None
        result.append(InitJob(job.source, job.name, names, commit or None))
    return result


def render_workload_patch(
    plan: JobPlan, environment: Environment, options: RenderOptions
) -> dict[str, Any]:
    init_containers: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    sources = [s.name for s in plan.sources] + sorted(
        {j.source for j in plan.jobs} - {s.name for s in plan.sources}
    )
    for source in sources:
        jobs = [j for j in plan.jobs if j.source == source and j.run_as is RunAs.INIT_CONTAINER]
        if not jobs:
            continue
        info = source_info(plan, source)
        volume = naming.dns_label(PREFIX, "workspace", source)
        working_dir = jobs[0].working_dir
        mounts: list[dict[str, Any]] = []
        clone = options.workspace == "clone" and bool(info and info.repository_url)
        if options.workspace != "image":
            mounts = [{"name": volume, "mountPath": working_dir}]
            volumes += workspace.volumes(
                options.git_credentials if clone else GitCredentials(), workspace=volume
            )
        if clone and info and info.repository_url:
            init_containers.append(
                workspace.clone_container(
                    info.repository_url,
                    revision_of(plan, environment, source),
                    working_dir,
                    options.git_image,
                    options.git_credentials,
                    options.clone_resources.to_dict(),
                    container_security(),
                    volume=volume,
                    name=naming.dns_label(PREFIX, "clone", source),
                )
            )
        done: set[str] = set()
        for job in jobs:
            image = resolve_image(job.image, source, environment, options.images, options.builds)
            for step in plan.setup_of(job):
                if step.name in done:
                    continue
                done.add(step.name)
                init_containers += step_containers(
                    naming.dns_label(PREFIX, source),
                    step,
                    image,
                    options.resources,
                    mounts,
                    run_in=job,
                )
            if job.name in done:
                continue  # a setup step another job already ran first
            done.add(job.name)
            init_containers += step_containers(
                naming.dns_label(PREFIX, source), job, image, options.resources, mounts
            )
    unique_volumes = {v["name"]: v for v in volumes}
    pod_spec: dict[str, Any] = {"initContainers": init_containers}
    if unique_volumes:
        pod_spec["volumes"] = list(unique_volumes.values())
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": options.workload, "namespace": environment.jobs_namespace},
        "spec": {"template": {"spec": pod_spec}},
    }


def with_workload_label(patch: Mapping[str, Any], environment_name: str) -> dict[str, Any]:
    """The workload patch plus `LABEL_WORKLOAD` on the pod template when it adds init
    containers, so the controller can watch the pods that run them (and only those)."""
    result = dict(patch)
    spec = dict(patch["spec"])
    template = dict(spec["template"])
    if template["spec"].get("initContainers"):
        meta = dict(template.get("metadata") or {})
        labels = {
            **(meta.get("labels") or {}),
            v.LABEL_WORKLOAD: naming.label_value(environment_name),
        }
        meta["labels"] = labels
        template["metadata"] = meta
    spec["template"] = template
    result["spec"] = spec
    return result


def patch_needed(
    patch: Mapping[str, Any],
    template_labels: Mapping[str, str],
    init_containers: Sequence[tuple[str, str]],
) -> bool:
    """Whether applying `patch` would change the workload, whose pod template has these
    labels and init containers ((name, canonical JSON), in order): devjobs writes only
    on change, and an unchanged apply still costs a request per round."""
    labels = (patch["spec"]["template"].get("metadata") or {}).get("labels") or {}
    if any(template_labels.get(k) != value for k, value in labels.items()):
        return True
    if v.LABEL_WORKLOAD in template_labels and v.LABEL_WORKLOAD not in labels:
        return True
    wanted = patch["spec"]["template"]["spec"].get("initContainers", [])
    have = {name: json.loads(text) for name, text in init_containers}
    ours = {n for n in have if n.startswith(v.INIT_PREFIX)}
    if ours - {c["name"] for c in wanted}:
        return True
    # Order matters for init containers: ours must be in the order we applied them.
    order = [n for n, _ in init_containers if n in {c["name"] for c in wanted}]
    if order != [c["name"] for c in wanted]:
        return True
    return not all(spec_subset(c, have[c["name"]]) for c in wanted)
