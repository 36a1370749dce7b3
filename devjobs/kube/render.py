"""The functional core of the runner: a JobPlan and an Environment in, Kubernetes
objects out. No cluster, no clock, no caller environment: the same input always gives
the same objects, which `devjobs render` prints and `devjobs run` applies.

One batch/v1 Job per job (its name carries a hash of everything that decides what runs,
so a re-run re-finds it); `runAs: InitContainer` jobs become a server-side-apply patch
of the environment's workload (see `workload.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devjobs.errors import DevjobsError
from devjobs.kube import naming, workspace
from devjobs.kube.images import resolve_image
from devjobs.kube.workspace import GitCredentials
from devjobs.resolver.environment import Environment
from devjobs.resolver.models import JobConfig, JobPlan, RunAs, SourceInfo, Trigger

MANAGED_BY = "devjobs"
FIELD_MANAGER = "devjobs"
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
"""Finished Jobs stay a week: re-running the same command re-finds them meanwhile."""

SETUP_STEP_NAMES = ("on-create", "update-content", "post-create")

# Annotation and label keys, shared with follow/status/logs.
LABEL_ENVIRONMENT = naming.label("environment")
LABEL_SOURCE = naming.label("source")
LABEL_JOB = naming.label("job")
LABEL_TRIGGER = naming.label("trigger")
ANNOTATION_COMMIT = naming.label("commit")
ANNOTATION_SPEC_HASH = naming.label("spec-hash")
ANNOTATION_BASE_HASH = naming.label("base-hash")
"""The spec hash without the attempt: equal for every attempt of the same run."""
ANNOTATION_ATTEMPT = naming.label("attempt")
ANNOTATION_JOB_KEY = naming.label("job-key")
ANNOTATION_CONTAINERS = naming.label("containers")


@dataclass(frozen=True)
class Resources:
    """Requests and limits; Catalyst namespaces have a ResourceQuota, so every container
    states all four."""

    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class RenderOptions:
    trigger: Trigger | None = None
    """Which lifecycle point's jobs to render; ignored when `jobs` names jobs."""
    jobs: tuple[str, ...] = ()
    """`JOB` or `SOURCE/JOB`: render these (the `Manual` trigger) instead."""
    images: Mapping[str, str] = field(default_factory=dict)
    """Image overrides: {source or "*": image} for jobs with `image: null`."""
    builds: Mapping[str, str] = field(default_factory=dict)
    """Catalyst build name per source (default: the source name)."""
    git_image: str = workspace.DEFAULT_GIT_IMAGE
    git_credentials: GitCredentials = field(default_factory=GitCredentials)
    workload: str = "web"
    """The Deployment that `runAs: InitContainer` jobs are added to."""
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    resources: Resources = field(default_factory=Resources)
    clone_resources: Resources = field(
        default_factory=lambda: Resources("50m", "64Mi", "500m", "256Mi")
    )
    workspace: str = "clone"
    """`clone`: an emptyDir at workingDir, cloned into at the commit; `empty`: the emptyDir
    only; `image`: no volume, the job uses what its image has at workingDir."""
    attempts: Mapping[str, int] = field(default_factory=dict)
    """`source/job` -> attempt number (`--rerun`); 0 (the default) is the first run."""


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


# --- containers --------------------------------------------------------------------


def container_security() -> dict[str, Any]:
    """Non-root friendly: no privilege escalation, the runtime's default seccomp
    profile, and nothing that requires a particular user."""
    return {"allowPrivilegeEscalation": False, "seccompProfile": {"type": "RuntimeDefault"}}


def _env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    # Order is the plan's: a later value may refer to an earlier one as $(NAME).
    return [{"name": key, "value": value} for key, value in env.items()]


def _container(
    name: str,
    image: str,
    argv: Sequence[str],
    job: JobConfig,
    env: Mapping[str, str],
    resources: Resources,
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(argv),
        "workingDir": job.working_dir,
        "resources": resources.to_dict(),
        "securityContext": container_security(),
    }
    if env:
        container["env"] = _env_list(env)
    if mounts:
        container["volumeMounts"] = mounts
    return container


def _entries(job: JobConfig) -> list[tuple[str, list[str]]]:
    """(suffix, argv) per process the job runs: one, or one per `parallel` entry."""
    if job.command is not None:
        return [("", list(job.command))]
    assert job.parallel is not None
    return [(key, list(argv)) for key, argv in job.parallel.items()]


def setup_steps(plan: JobPlan, job: JobConfig) -> list[JobConfig]:
    return plan.setup_of(job)


def step_containers(
    prefix: str,
    job: JobConfig,
    image: str,
    resources: Resources,
    mounts: list[dict[str, Any]],
    run_in: JobConfig | None = None,
) -> list[dict[str, Any]]:
    """Containers of `job`, named `prefix-...`; a setup step runs in the image and
    working directory of the job it prepares (`run_in`). Parallel entries of a step
    run one after another, as init containers cannot run side by side."""
    host = run_in or job
    containers = []
    for suffix, argv in _entries(job):
        parts = [prefix, job.name, suffix] if suffix else [prefix, job.name]
        containers.append(
            _container(
                naming.container_name(*parts),
                image,
                argv,
                host,
                job.env,
                resources,
                mounts,
            )
        )
    return containers


# --- Jobs --------------------------------------------------------------------------


def source_info(plan: JobPlan, name: str) -> SourceInfo | None:
    for source in plan.sources:
        if source.name == name:
            return source
    return None


def revision_of(plan: JobPlan, environment: Environment, source: str) -> str:
    """The commit a job of `source` runs at: the Environment's, else the plan's."""
    env_source = environment.source(source)
    if env_source and env_source.revision:
        return env_source.revision
    info = source_info(plan, source)
    if info and (info.commit_sha or info.branch):
        return info.commit_sha or info.branch or ""
    return ""


def common_labels(environment: Environment, job: JobConfig, trigger: Trigger) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": "devjobs",
        "app.kubernetes.io/component": "job",
        "app.kubernetes.io/instance": naming.label_value(environment.name),
        "app.kubernetes.io/part-of": naming.label_value(environment.project),
        "catalyst.dev/job-type": "ci",
        LABEL_ENVIRONMENT: naming.label_value(environment.name),
        LABEL_SOURCE: naming.label_value(job.source),
        LABEL_JOB: naming.label_value(job.name),
        LABEL_TRIGGER: trigger.value,
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
    for step in setup_steps(plan, job):
        init_containers += step_containers(
            "devjobs-setup", step, image, options.resources, mounts, run_in=job
        )
    containers = []
    for suffix, argv in _entries(job):
        name = naming.container_name(suffix) if suffix else job.name
        containers.append(_container(name, image, argv, job, job.env, options.resources, mounts))
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
        labels["catalyst.dev/installation-id"] = naming.label_value(
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
    spec_hash = naming.digest({"base": base_hash, "attempt": attempt}, 16) if attempt else base_hash
    name = naming.job_name(environment.name, job.source, job.name, spec_hash)
    # Mutable, so outside the hash: changing it must not start a new run.
    spec["ttlSecondsAfterFinished"] = options.ttl_seconds
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": environment.namespace,
        "labels": labels,
        "annotations": {
            ANNOTATION_COMMIT: commit,
            ANNOTATION_SPEC_HASH: spec_hash,
            ANNOTATION_BASE_HASH: base_hash,
            ANNOTATION_ATTEMPT: str(attempt),
            ANNOTATION_JOB_KEY: job.key,
            ANNOTATION_CONTAINERS: ",".join(c["name"] for c in containers),
        },
    }
    if environment.uid:
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


def render(plan: JobPlan, environment: Environment, options: RenderOptions) -> Rendered:
    """Everything devjobs would create for `options` (see the module docstring)."""
    from devjobs.kube.workload import render_workload_patch

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
