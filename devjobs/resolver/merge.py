"""Merging a source's devcontainer jobs with the Project CR's jobs for that source.

Rules (the CR overrides by name):
- a CR job named like a devcontainer job overrides the fields it sets and inherits the
  rest; `env` is overlaid key by key (a value replaces a Secret or ConfigMap key of the
  same name, and the other way round); `enabled: false` removes the job;
- other CR jobs are added after the devcontainer's, in CR order;
- devcontainer jobs run the setup steps first unless the CR says `setup: false` or
  moves them to another image; CR-only jobs run them only with `setup: true`.
The result is validated as a whole: `InitContainer` only at `PreDeploy`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from devjobs.errors import DevjobsError
from devjobs.resolver.jobspec import JobSpec
from devjobs.resolver.lifecycle import SETUP_COMMANDS, CommandReader
from devjobs.resolver.models import InvalidJob, JobConfig, Origin, RunAs, SkippedItem, Trigger
from devjobs.resolver.names import normalise_name

SETUP_JOBS = tuple(name for _, name in SETUP_COMMANDS)
"""The devcontainer's setup steps as job names: `on-create`, `update-content`, `post-create`."""


@dataclass(frozen=True)
class ProjectJob:
    """A CR job with the places needed to report on it."""

    spec: JobSpec
    origin: Origin
    where: Callable[[str], str]
    """Maps a field name (`""` for the job itself) to `file:line:col: field.path`."""


@dataclass(frozen=True)
class SourceDefaults:
    """What a CR-only job inherits from its source's devcontainer (if any)."""

    working_dir: str
    setup: list[str] = field(default_factory=list)
    devcontainer_image: str | None = None


@dataclass
class Merged:
    jobs: list[JobConfig]
    skipped: list[SkippedItem]
    warnings: list[str]


def to_command(
    value: Any, where: Callable[[str], str]
) -> tuple[list[str] | None, dict[str, list[str]] | None]:
    """A CR job's command in any of the three devcontainer forms, read by the same
    reader as devcontainer.json (string -> sh -c, list -> argv, object -> parallel);
    CR values are used as written, without variable substitution."""
    reader = CommandReader(text=lambda text, _path: text, place=lambda _path: where("command"))
    command = reader.read(value, ["command"])
    if command is None:
        raise DevjobsError(where("command"), "command must not be empty")
    return command.argv, command.parallel


def merge_source(
    source: str,
    devcontainer_jobs: Sequence[JobConfig],
    project_jobs: Sequence[ProjectJob],
    defaults: SourceDefaults,
) -> Merged:
    """One source's final job list, in stable order (devcontainer order, then CR order)."""
    jobs: dict[str, JobConfig] = {job.name: job for job in devcontainer_jobs}
    skipped: list[SkippedItem] = []
    warnings: list[str] = []
    seen: dict[str, str] = {}
    places: dict[str, Callable[[str], str]] = {}
    for project_job in project_jobs:
        name, warning = normalise_name(project_job.spec.name, project_job.where("name"))
        if warning:
            warnings.append(warning)
        if name in seen:
            raise DevjobsError(
                project_job.where("name"),
                f"duplicate job name {name!r} in source {source!r} (first at {seen[name]})",
            )
        seen[name] = project_job.where("")
        places[name] = project_job.where
        spec = project_job.spec
        if not spec.enabled:
            if name in jobs:
                del jobs[name]
            skipped.append(
                SkippedItem(
                    source=source,
                    pointer=project_job.origin.pointer,
                    reason="disabled by the Project (enabled: false)",
                    file=project_job.origin.file,
                )
            )
            continue
        if name in jobs:
            jobs[name] = _override(jobs[name], spec, project_job, defaults)
        else:
            jobs[name] = _new_job(source, name, spec, project_job, defaults)
    for job in jobs.values():
        _check(job, places.get(job.name))
    return Merged(list(jobs.values()), skipped, warnings)


def _build(values: dict[str, Any], where: Callable[[str], str]) -> JobConfig:
    try:
        return JobConfig(**values)
    except InvalidJob as error:
        raise DevjobsError(where(error.field), str(error)) from None


def _override(
    base: JobConfig, spec: JobSpec, project_job: ProjectJob, defaults: SourceDefaults
) -> JobConfig:
    values = {f.name: getattr(base, f.name) for f in fields(base)}
    given = spec.given
    if "command" in given and spec.command is not None:
        values["command"], values["parallel"] = to_command(spec.command, project_job.where)
    for name in ("trigger", "working_dir", "timeout_seconds", "retries", "run_as"):
        if name in given and getattr(spec, name) is not None:
            values[name] = getattr(spec, name)
    if "env" in given and spec.env is not None:
        values["env"] = {**base.env, **spec.env}
    if "env_from" in given and spec.env_from is not None:
        values["env_from"] = [*base.env_from, *spec.env_from]
    if "runtime_context" in given:
        values["runtime_context"] = spec.runtime_context
    if "image" in given:
        values["image"] = spec.image
        if spec.image != defaults.devcontainer_image:
            values["setup"] = []
    if spec.setup is False or base.name in SETUP_JOBS:
        values["setup"] = []
    elif spec.setup is True:
        values["setup"] = list(defaults.setup)
    values["origins"] = [*base.origins, project_job.origin]
    return _build(values, project_job.where)


def _new_job(
    source: str, name: str, spec: JobSpec, project_job: ProjectJob, defaults: SourceDefaults
) -> JobConfig:
    if spec.command is None:
        raise DevjobsError(project_job.where("command"), f"job {name!r} needs a command")
    command, parallel = to_command(spec.command, project_job.where)
    return _build(
        {
            "name": name,
            "source": source,
            "trigger": spec.trigger or Trigger.MANUAL,
            "run_as": spec.run_as or RunAs.JOB,
            "command": command,
            "parallel": parallel,
            "image": spec.image,
            "working_dir": spec.working_dir or defaults.working_dir,
            "env": dict(spec.env or {}),
            "timeout_seconds": spec.timeout_seconds,
            "retries": spec.retries or 0,
            "setup": list(defaults.setup) if spec.setup else [],
            "env_from": list(spec.env_from or []),
            "runtime_context": spec.runtime_context,
            "origins": [project_job.origin],
        },
        project_job.where,
    )


def _check(job: JobConfig, where: Callable[[str], str] | None) -> None:
    """Whole-job rules that only hold after merging."""
    if job.run_as == RunAs.INIT_CONTAINER and job.trigger != Trigger.PRE_DEPLOY:
        place = where("runAs") if where else _origin_place(job)
        raise DevjobsError(
            place,
            f"job {job.name!r} runs as InitContainer, which is only possible at PreDeploy "
            f"(its trigger is {job.trigger.value})",
        )


def _origin_place(job: JobConfig) -> str:
    origin = job.origins[-1] if job.origins else None
    return f"{origin.file}: {origin.pointer}" if origin else job.key
