"""A job as a user writes it: `spec.sources[i].jobs[]` of a Project CR, or
`customizations.devjobs.jobs` of devcontainer.json.

This is untrusted input, so it is validated with pydantic, whose errors
`devjobs.resolver.project` and `devjobs.resolver.devcontainer` turn into
`file:line:col: field: message`. Importing this module imports pydantic (~60 ms), so
the resolver imports it only when a plan has such jobs to read; the plan's own models
(`devjobs.resolver.models`) do not need it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from devjobs.resolver.models import RunAs, Trigger

Argv = Annotated[list[str], Field(min_length=1)]
"""A command as an exec argv: the first item is the program."""

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What a POSIX shell (and Kubernetes' EnvVar validation in practice) accepts as a name."""


class JobSpec(BaseModel):
    """A job as written by a user: in `spec.sources[i].jobs[]` of a Project CR, or in
    `customizations.devjobs.jobs` of devcontainer.json. Every field but `name` is
    optional, so a spec can override just what it sets (see `model_fields_set`)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # Attribute docstrings become schema descriptions in devjobs.schemas, which
        # reads them itself: pydantic's own extraction costs every start ~10 ms.
        defer_build=True,
    )

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
