"""The contract between the resolver and the runner.

The resolver turns a repository's devcontainer.json and a Project CR into a `JobPlan`;
everything that runs jobs (the Kubernetes runner, the local runner, the controller)
consumes only these models. Field names serialise in camelCase, as in Kubernetes.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from devjobs.errors import DevjobsError

API_VERSION: Literal["devjobs.dev/v1alpha1"] = "devjobs.dev/v1alpha1"

Argv = Annotated[list[str], Field(min_length=1)]
"""A command as an exec argv: the first item is the program."""

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What a POSIX shell (and Kubernetes' EnvVar validation in practice) accepts as a name."""


class Trigger(enum.StrEnum):
    """The lifecycle points at which a job runs, in the order an environment reaches them."""

    POST_BUILD = "PostBuild"
    PRE_DEPLOY = "PreDeploy"
    POST_DEPLOY = "PostDeploy"
    MANUAL = "Manual"


LIFECYCLE_ORDER: tuple[Trigger, ...] = (
    Trigger.POST_BUILD,
    Trigger.PRE_DEPLOY,
    Trigger.POST_DEPLOY,
)
"""The points that fire by themselves, in order; `Manual` jobs run only when asked for."""


class RunAs(enum.StrEnum):
    """How a job is run: its own batch/v1 Job, or an init container of the workload."""

    JOB = "Job"
    INIT_CONTAINER = "InitContainer"


class Model(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # Attribute docstrings become schema descriptions in devjobs.schemas, which
        # reads them itself: pydantic's own extraction costs every start ~10 ms.
        defer_build=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-compatible form used in `-o json|yaml` output and between processes."""
        return self.model_dump(mode="json", by_alias=True)


class Origin(Model):
    """Where a job's fields came from, so `devjobs plan` can point at the line to edit."""

    kind: Literal["devcontainer", "project", "commandLine"]
    file: str
    """Path relative to the source checkout (devcontainer) or as given (Project CR file)."""
    pointer: str
    """RFC 6901 JSON pointer into that file, e.g. `/tasks/test` or `/spec/sources/0/jobs/1`."""


class JobConfig(Model):
    """One fully resolved job: everything a runner needs, nothing it must look up again."""

    name: str
    """A valid Kubernetes name (RFC 1123 label), unique within its source."""
    source: str
    trigger: Trigger
    run_as: RunAs = RunAs.JOB
    command: Argv | None = None
    parallel: dict[str, Argv] | None = None
    """Entries run concurrently; all must succeed. Exactly one of command/parallel is set."""
    image: str | None = None
    """None means "the environment's build image", filled in by the runner."""
    working_dir: str
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: int | None = Field(default=None, gt=0)
    retries: int = Field(default=0, ge=0)
    setup: list[str] = Field(default_factory=list)
    """Names of this source's setup jobs (on-create, ...) to run first in the same
    container, as the reference runs lifecycle commands before any user command."""
    origins: list[Origin] = Field(default_factory=list)
    """Lowest precedence first."""

    @model_validator(mode="after")
    def _exactly_one_command(self) -> JobConfig:
        if (self.command is None) == (self.parallel is None):
            raise ValueError("exactly one of command or parallel must be set")
        if self.parallel is not None and not self.parallel:
            raise ValueError("parallel must have at least one entry")
        return self

    def to_wire(self) -> dict[str, Any]:
        """Exactly one of `command`/`parallel` appears on the wire, never a null twin."""
        data = super().to_wire()
        for name in ("command", "parallel"):
            if data.get(name) is None:
                del data[name]
        return data

    @property
    def key(self) -> str:
        """`source/name`: unique within a plan."""
        return f"{self.source}/{self.name}"


class SkippedItem(Model):
    """Something in the inputs that deliberately did not become a job, and why."""

    source: str
    pointer: str
    reason: str
    file: str | None = None
    """The file `pointer` points into (devcontainer.json relative to the source, or the
    Project file)."""


class SourceInfo(Model):
    """A source as the plan saw it: where runners clone it from and at which commit."""

    name: str
    repository_url: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    """The commit the plan was read at (None for an uncommitted local directory)."""
    devcontainer_file: str | None = None
    """Path of the devcontainer.json used, relative to the checkout; None when none."""
    local_path: str | None = None
    """Set when the source is a local directory given with `--source NAME=DIR`."""


class JobPlan(Model):
    """What `devjobs plan` prints and every runner consumes."""

    api_version: Literal["devjobs.dev/v1alpha1"] = API_VERSION
    kind: Literal["JobPlan"] = "JobPlan"
    sources: list[SourceInfo] = Field(default_factory=list)
    jobs: list[JobConfig] = Field(default_factory=list)
    skipped: list[SkippedItem] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        data = super().to_wire()
        data["jobs"] = [job.to_wire() for job in self.jobs]
        return data

    def jobs_for(self, trigger: Trigger) -> list[JobConfig]:
        """Jobs of one lifecycle point, in plan order."""
        return [job for job in self.jobs if job.trigger == trigger]

    def setup_of(self, job: JobConfig) -> list[JobConfig]:
        """The setup jobs `job` runs first, in order (from the same source)."""
        steps = []
        for name in job.setup:
            try:
                steps.append(self.job(job.source, name))
            except KeyError:
                raise DevjobsError(
                    f"job {job.key}", f"setup job {name!r} is not a job of source {job.source!r}"
                ) from None
        return steps

    def job(self, source: str, name: str) -> JobConfig:
        """The job `source/name`; KeyError when there is none."""
        for job in self.jobs:
            if job.source == source and job.name == name:
                return job
        raise KeyError(f"{source}/{name}")


class JobSpec(Model):
    """A job as written by a user: in `spec.sources[i].jobs[]` of a Project CR, or in
    `customizations.devjobs.jobs` of devcontainer.json. Every field but `name` is
    optional, so a spec can override just what it sets (see `model_fields_set`)."""

    name: str = Field(min_length=1)
    """The job's name; a job of the devcontainer with this name is overridden."""
    trigger: Trigger | None = None
    """When it runs: PostBuild, PreDeploy (blocking), PostDeploy or Manual (default)."""
    command: Argv | str | dict[str, Argv | str] | None = None
    """An argv list (exec, no shell); in files also a shell string, or an object whose
    entries run in parallel, as in devcontainer.json."""
    image: str | None = None
    """Container image; null: the environment's build image. Default: the devcontainer's
    image for devcontainer jobs, else the build image."""
    env: dict[str, str] | None = None
    """Environment variables, overlaid on the devcontainer's."""
    working_dir: str | None = None
    """Default: the devcontainer's workspaceFolder, else /workspaces/<repository name>."""
    timeout_seconds: int | None = Field(default=None, gt=0)
    """The job fails when it runs longer (activeDeadlineSeconds)."""
    retries: int | None = Field(default=None, ge=0)
    """Attempts after the first failure (backoffLimit); default 0."""
    run_as: RunAs | None = None
    """Job (default), or InitContainer of the environment's workload (PreDeploy only)."""
    enabled: bool = True
    """false removes the job (e.g. a devcontainer task this Project does not want)."""
    setup: bool | None = None
    """Whether the devcontainer's setup steps (onCreateCommand, ...) run first. Default:
    yes for jobs in the devcontainer's image, no for others."""

    @field_validator("command")
    @classmethod
    def _command_does_something(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("command must not be empty")
        if isinstance(value, list) and not value[0]:
            raise ValueError("the program (first item) must not be empty")
        if isinstance(value, dict) and not value:
            raise ValueError("a parallel command needs at least one entry")
        return value

    @field_validator("env")
    @classmethod
    def _env_names_are_valid(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return value

    @field_validator("working_dir")
    @classmethod
    def _working_dir_is_absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"workingDir must be an absolute path, not {value!r}")
        return value

