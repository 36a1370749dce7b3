"""The parts both of devjobs' pod specs are made of: a job's Jobs (`render`) and the
workload's init containers (`workload`): the options, requests and limits, containers,
and the commit a source's jobs run at. Pure, like both of its users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devjobs import catalyst
from devjobs.kube import naming, workspace
from devjobs.kube.workspace import GitCredentials
from devjobs.resolver.environment import Environment
from devjobs.resolver.models import EnvValue, JobConfig, JobPlan, SourceInfo, Trigger, wire_value

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
"""Finished Jobs stay a week: re-running the same command re-finds them meanwhile."""


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
class RuntimeContext:
    """What a job gets from the environment it works on (`JobConfig.gets_runtime_context`):
    the env and envFrom of the workload's main container (Catalyst's `catalyst-secrets`
    among them) and `DEVJOBS_ENVIRONMENT_URL`, Catalyst's `status.url`. It is added after
    the Job's name is fixed: a workload that appears or changes later (helm mode deploys
    after PostBuild) does not make a new run of a job already created."""

    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    url: str = ""

    def apply(self, container: dict[str, Any]) -> None:
        """Put the context before the job's own variables (which win, values and
        `valueFrom` references alike, and may refer to the context's as `$(NAME)`) and its
        own envFrom entries."""
        own = container.get("env") or []
        names = {str(e.get("name")) for e in own}
        context = [dict(e) for e in self.env if e.get("name") not in names | {URL_VARIABLE}]
        if self.url and URL_VARIABLE not in names:
            context.append({"name": URL_VARIABLE, "value": self.url})
        if context or own:
            container["env"] = [*context, *own]
        env_from = [*(dict(e) for e in self.env_from), *(container.get("envFrom") or [])]
        if env_from:
            container["envFrom"] = env_from


URL_VARIABLE = "DEVJOBS_ENVIRONMENT_URL"


def runtime_context(
    deployment: Mapping[str, Any] | None, container: str, url: str
) -> RuntimeContext:
    """The context from the workload Deployment's main container `container` (none when
    there is no Deployment yet, or no such container)."""
    spec = ((deployment or {}).get("spec") or {}).get("template") or {}
    for found in (spec.get("spec") or {}).get("containers") or []:
        if isinstance(found, Mapping) and found.get("name") == container:
            env = tuple(e for e in found.get("env") or [] if isinstance(e, Mapping))
            env_from = tuple(e for e in found.get("envFrom") or [] if isinstance(e, Mapping))
            return RuntimeContext(env, env_from, url)
    return RuntimeContext(url=url)


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
    workload: str = catalyst.WORKLOAD_DEPLOYMENT
    """The Deployment that `runAs: InitContainer` jobs are added to."""
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    resources: Resources = field(default_factory=Resources)
    clone_resources: Resources = field(
        default_factory=lambda: Resources("50m", "64Mi", "500m", "256Mi")
    )
    workspace: str = "clone"
    """`clone`: an emptyDir at workingDir, cloned into at the commit; `empty`: the emptyDir
    only; `image`: no volume, the job uses what its image has at workingDir."""
    runtime: RuntimeContext = field(default_factory=RuntimeContext)
    """The environment's runtime context (`RuntimeContext`), for jobs that get it."""
    attempts: Mapping[str, int] = field(default_factory=dict)
    """`source/job` -> attempt number (`--rerun`); 0 (the default) is the first run."""


# --- containers --------------------------------------------------------------------


def container_security() -> dict[str, Any]:
    """Non-root friendly: no privilege escalation, the runtime's default seccomp
    profile, and nothing that requires a particular user."""
    return {"allowPrivilegeEscalation": False, "seccompProfile": {"type": "RuntimeDefault"}}


def env_list(env: Mapping[str, EnvValue]) -> list[dict[str, Any]]:
    """Kubernetes' `env`: `value`, or `valueFrom` for a key of a Secret or ConfigMap. Order
    is the plan's: a later value may refer to an earlier one as $(NAME)."""
    return [
        {"name": key, "value": value}
        if isinstance(value, str)
        else {"name": key, "valueFrom": wire_value(value)}
        for key, value in env.items()
    ]


def make_container(
    name: str,
    image: str,
    argv: Sequence[str],
    job: JobConfig,
    env: Mapping[str, EnvValue],
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
        container["env"] = env_list(env)
    if job.env_from:
        container["envFrom"] = [wire_value(source) for source in job.env_from]
    if mounts:
        container["volumeMounts"] = mounts
    return container


def entries(job: JobConfig) -> list[tuple[str, list[str]]]:
    """(suffix, argv) per process the job runs: one, or one per `parallel` entry."""
    if job.command is not None:
        return [("", list(job.command))]
    assert job.parallel is not None
    return [(key, list(argv)) for key, argv in job.parallel.items()]


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
    for suffix, argv in entries(job):
        parts = [prefix, job.name, suffix] if suffix else [prefix, job.name]
        containers.append(
            make_container(
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


# --- where a source runs ---------------------------------------------------------


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


def revisions(plan: JobPlan, environment: Environment) -> dict[str, str]:
    """Source -> the revision its jobs run at now (the Environment's pin, else the plan's)."""
    names = [s.name for s in plan.sources] + [s.name for s in environment.sources]
    return {name: revision_of(plan, environment, name) for name in dict.fromkeys(names)}
