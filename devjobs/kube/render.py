"""The functional core of the runner: a JobPlan and an Environment in, Kubernetes
objects out. No cluster, no clock, no caller environment: the same input always gives
the same objects, which `devjobs render` prints and `devjobs run` applies.

One batch/v1 Job per job (its name carries a hash of everything that decides what runs,
so a re-run re-finds it); `runAs: InitContainer` jobs become a server-side-apply patch
of the environment's workload (see `workload.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from devjobs import catalyst
from devjobs.errors import DevjobsError
from devjobs.kube import naming, workspace
from devjobs.kube import vocabulary as v
from devjobs.kube.images import resolve_image
from devjobs.kube.podspec import (
    RenderOptions,
    container_security,
    entries,
    make_container,
    revision_of,
    source_info,
    step_containers,
)
from devjobs.kube.workload import render_workload_patch
from devjobs.kube.workspace import GitCredentials
from devjobs.resolver.environment import Environment
from devjobs.resolver.models import JobConfig, JobPlan, RunAs, Trigger

SETUP_CONTAINER_PREFIX = f"{v.WORKLOAD_NAME_PREFIX}-setup"


@dataclass(frozen=True)
class RenderedJob:
    config: JobConfig
    trigger: Trigger
    name: str
    spec_hash: str
    base_hash: str
    commit: str
    manifest: dict[str, Any]
    containers: tuple[str, ...]
    """The job's own containers (not the clone/setup init containers)."""

    @property
    def key(self) -> str:
        return self.config.key


@dataclass(frozen=True)
class Rendered:
    jobs: tuple[RenderedJob, ...]
    workload_patch: dict[str, Any] | None
    """The workload's init containers; rendered for the PreDeploy trigger only."""

    def manifests(self) -> list[dict[str, Any]]:
        objects = [job.manifest for job in self.jobs]
        if self.workload_patch is not None:
            objects.append(self.workload_patch)
        return objects


# --- selection ---------------------------------------------------------------------


def setup_step_keys(plan: JobPlan) -> set[str]:
    """`source/name` of every job some job runs as a setup step first."""
    return {f"{job.source}/{step}" for job in plan.jobs for step in job.setup}


def select_jobs(plan: JobPlan, options: RenderOptions) -> list[tuple[JobConfig, Trigger]]:
    """The Job-run jobs to render with the trigger they run under, in plan order."""
    if options.jobs:
        picked: list[tuple[JobConfig, Trigger]] = []
        for wanted in options.jobs:
            job = find_job(plan, wanted)
            if job.run_as is not RunAs.JOB:
                raise DevjobsError(
                    wanted, "runs as an init container of the workload; it cannot run alone"
                )
            if all(job is not other for other, _ in picked):
                picked.append((job, Trigger.MANUAL))
        return picked
    if options.trigger is None:
        raise DevjobsError("--trigger", "give a trigger or name the jobs to run")
    setup = setup_step_keys(plan)
    return [
        (job, options.trigger)
        for job in plan.jobs_for(options.trigger)
        if job.run_as is RunAs.JOB and job.key not in setup
    ]


def find_job(plan: JobPlan, wanted: str) -> JobConfig:
    """A job by `JOB` or `SOURCE/JOB`; an error naming the candidates otherwise."""
    source, sep, name = wanted.rpartition("/")
    matches = [j for j in plan.jobs if j.name == name and (not sep or j.source == source)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(sorted({j.key for j in plan.jobs})) or "none"
        raise DevjobsError(wanted, f"no such job in the plan (jobs: {known})")
    keys = ", ".join(j.key for j in matches)
    raise DevjobsError(wanted, f"ambiguous: name one of {keys}")


def common_labels(environment: Environment, job: JobConfig, trigger: Trigger) -> dict[str, str]:
    return {
        v.LABEL_MANAGED_BY: v.MANAGED_BY,
        v.LABEL_NAME: "devjobs",
        v.LABEL_COMPONENT_STANDARD: "job",
        v.LABEL_INSTANCE: naming.label_value(environment.name),
        v.LABEL_PART_OF: naming.label_value(environment.project),
        catalyst.BUILD_TYPE_LABEL: v.CI_JOB_TYPE,
        v.LABEL_ENVIRONMENT: naming.label_value(environment.name),
        v.LABEL_SOURCE: naming.label_value(job.source),
        v.LABEL_JOB: naming.label_value(job.name),
        v.LABEL_TRIGGER: trigger.value,
    }


def render_job(
    plan: JobPlan,
    environment: Environment,
    job: JobConfig,
    trigger: Trigger,
    options: RenderOptions,
) -> RenderedJob:
    image = resolve_image(job.image, job.source, environment, options.images, options.builds)
    commit = revision_of(plan, environment, job.source)
    info = source_info(plan, job.source)
    clone = options.workspace == "clone" and bool(info and info.repository_url)
    # A workspace (unless the image brings its own): what setup steps write there
    # (dependencies, build output) is what the job finds. Cloned into when the source
    # has a repository.
    mounts: list[dict[str, Any]] = []
    if options.workspace != "image":
        mounts = [{"name": workspace.WORKSPACE_VOLUME, "mountPath": job.working_dir}]

    init_containers: list[dict[str, Any]] = []
    if clone:
        assert info is not None and info.repository_url is not None
        if not commit:
            raise DevjobsError(
                f"Environment {environment.ref}",
                f"no commit or branch for source {job.source!r} to clone",
            )
        init_containers.append(
            workspace.clone_container(
                info.repository_url,
                commit,
                job.working_dir,
                options.git_image,
                options.git_credentials,
                options.clone_resources.to_dict(),
                container_security(),
            )
        )
    for step in plan.setup_of(job):
        init_containers += step_containers(
            SETUP_CONTAINER_PREFIX, step, image, options.resources, mounts, run_in=job
        )
    containers = []
    for suffix, argv in entries(job):
        name = naming.container_name(suffix) if suffix else job.name
        containers.append(
            make_container(name, image, argv, job, job.env, options.resources, mounts)
        )
    names = [c["name"] for c in init_containers + containers]
    if len(set(names)) != len(names):
        raise DevjobsError(f"job {job.key}", f"container names collide: {', '.join(names)}")

    labels = common_labels(environment, job, trigger)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    pod_spec["volumes"] = workspace.volumes(options.git_credentials if clone else GitCredentials())
    if options.git_credentials.catalyst_installation_id and clone:
        labels[catalyst.INSTALLATION_ID_LABEL] = naming.label_value(
            options.git_credentials.catalyst_installation_id
        )
    rules: list[dict[str, Any]] = [
        # Evictions and preemptions are not the job's fault: retry, uncounted.
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        # A non-zero exit fails the Job at once, unless the job asked for retries.
        {
            "action": "FailJob" if job.retries == 0 else "Count",
            "onExitCodes": {"operator": "NotIn", "values": [0]},
        },
    ]
    spec: dict[str, Any] = {
        "backoffLimit": job.retries,
        "podFailurePolicy": {"rules": rules},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if job.timeout_seconds is not None:
        spec["activeDeadlineSeconds"] = job.timeout_seconds
    attempt = options.attempts.get(job.key, 0)
    base_hash = naming.digest({"spec": spec, "commit": commit}, 16)
    spec_hash = attempt_hash(base_hash, attempt)
    name = naming.job_name(environment.name, job.source, job.name, spec_hash)
    # Mutable, so outside the hash: changing it must not start a new run.
    spec["ttlSecondsAfterFinished"] = options.ttl_seconds
    if job.gets_runtime_context:
        # Outside the hash too: see `podspec.RuntimeContext`.
        # The job's containers and its setup steps, not the clone (the first, if any).
        for container in [*init_containers[1 if clone else 0 :], *containers]:
            options.runtime.apply(container)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": environment.jobs_namespace,
        "labels": labels,
        "annotations": {
            **owner_or_origin(environment),
            v.ANNOTATION_COMMIT: commit,
            v.ANNOTATION_SPEC_HASH: spec_hash,
            v.ANNOTATION_BASE_HASH: base_hash,
            v.ANNOTATION_ATTEMPT: str(attempt),
            v.ANNOTATION_JOB_KEY: job.key,
            v.ANNOTATION_CONTAINERS: ",".join(c["name"] for c in containers),
        },
    }
    if environment.uid and environment.place.owned:
        metadata["ownerReferences"] = [environment.owner_reference()]
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
    return RenderedJob(
        config=job,
        trigger=trigger,
        name=name,
        spec_hash=spec_hash,
        base_hash=base_hash,
        commit=commit,
        manifest=manifest,
        containers=tuple(c["name"] for c in containers),
    )


def owner_or_origin(environment: Environment) -> dict[str, str]:
    """What ties an object in the jobs namespace to its Environment besides the labels:
    an owner reference when they share a namespace (none here), else the Environment's
    namespace as an annotation (owner references cannot cross namespaces)."""
    if environment.place.owned:
        return {}
    return {v.ANNOTATION_ENVIRONMENT_NAMESPACE: environment.namespace}


def attempt_hash(base_hash: str, attempt: int) -> str:
    """The spec hash of attempt `attempt` of a run (0: the run itself)."""
    return naming.digest({"base": base_hash, "attempt": attempt}, 16) if attempt else base_hash


def with_attempt(job: RenderedJob, attempt: int, environment: Environment) -> RenderedJob:
    """`job` as attempt `attempt` of the same run: a new name and spec hash, the same
    spec (what `render` gives with `RenderOptions.attempts`, without rendering again)."""
    spec_hash = attempt_hash(job.base_hash, attempt)
    name = naming.job_name(environment.name, job.config.source, job.config.name, spec_hash)
    metadata = dict(job.manifest["metadata"])
    metadata["name"] = name
    metadata["annotations"] = {
        **metadata["annotations"],
        v.ANNOTATION_SPEC_HASH: spec_hash,
        v.ANNOTATION_ATTEMPT: str(attempt),
    }
    manifest = {**job.manifest, "metadata": metadata}
    return replace(job, name=name, spec_hash=spec_hash, manifest=manifest)


def render(plan: JobPlan, environment: Environment, options: RenderOptions) -> Rendered:
    """Everything devjobs would create for `options` (see the module docstring)."""
    jobs = tuple(
        render_job(plan, environment, job, trigger, options)
        for job, trigger in select_jobs(plan, options)
    )
    patch = None
    if options.trigger is Trigger.PRE_DEPLOY and not options.jobs:
        # Always at PreDeploy, even with nothing to add: applying it is what removes
        # the init containers devjobs added before and no longer wants.
        patch = render_workload_patch(plan, environment, options)
    return Rendered(jobs=jobs, workload_patch=patch)
