"""A source's devcontainer.json as jobs: the entry point of the devcontainer half of
the resolver.

`read_devcontainer` finds the config, reads it as JSONC, substitutes variables the
way the reference does, and turns it into `JobConfig`s: the setup commands
(on-create, update-content, post-create), then `tasks`, then
`customizations.devjobs.jobs`. Every error is a `DevjobsError` placed at
`file:line:col`; nothing else escapes, whatever the file holds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from devjobs.errors import DevjobsError
from devjobs.resolver import jsonc
from devjobs.resolver.discovery import find_config, read_checkout_file
from devjobs.resolver.fields import InvalidField
from devjobs.resolver.jobspec import JobSpec
from devjobs.resolver.jsonc import Document, JsonPath
from devjobs.resolver.lifecycle import (
    SETUP_COMMANDS,
    Command,
    CommandReader,
    JobBase,
    setup_jobs,
)
from devjobs.resolver.models import EnvValue, EnvVarSource, JobConfig, RunAs, SkippedItem, Trigger
from devjobs.resolver.names import is_valid_name, normalise_name
from devjobs.resolver.variables import Variables

Target = Literal["local", "cluster"]

DEVJOBS = ("customizations", "devjobs")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
"""Kubernetes accepts these as container environment variable names."""
LATE_VARIABLE = re.compile(r"\$\{(?:containerEnv:[^}]*|devcontainerId)\}")
"""Variables the reference substitutes only once its container exists."""
TRIGGERS = ", ".join(trigger.value for trigger in Trigger)


@dataclass(frozen=True)
class Devcontainer:
    """What a source's devcontainer.json contributes to a plan."""

    file: str
    """Config path relative to the checkout, POSIX, e.g. ".devcontainer/devcontainer.json"."""
    image: str | None
    """`image`, or the compose service's `image:`; None = the environment's build image."""
    working_dir: str
    env: dict[str, str]
    jobs: list[JobConfig]
    skipped: list[SkippedItem]
    warnings: list[str]


def read_devcontainer(
    checkout: Path,
    *,
    source: str,
    basename: str,
    config: str | None = None,
    target: Target = "cluster",
    local_env: Mapping[str, str] | None = None,
) -> Devcontainer | None:
    """Discover (or use `config`), read, substitute, and turn into jobs.

    None when the source has no devcontainer config. `local_env` is read only with
    target "local" (default: os.environ); target "cluster" never reads the caller's
    environment.
    """
    file = find_config(checkout, chosen=config) if config is not None else find_config(checkout)
    if file is None:
        return None
    document = jsonc.parse(_decode(read_checkout_file(checkout, file), file), file)
    if not isinstance(document.value, dict):
        raise DevjobsError(document.place([]), "a devcontainer config must be a JSON object")
    if target == "local":
        environment: Mapping[str, str] | None = os.environ if local_env is None else local_env
        local_folder: str | None = os.path.abspath(checkout)
    else:
        environment, local_folder = None, None
    return _Reader(checkout, document, source, basename, environment, local_folder).read()


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        prefix = data[: error.start].decode("utf-8", "replace")
        line, col = jsonc.line_col(prefix, len(prefix))
        raise DevjobsError(f"{file}:{line}:{col}", "not valid UTF-8") from None


class _Reader:
    """One config being turned into jobs: the document, its variables, the warnings."""

    def __init__(
        self,
        checkout: Path,
        document: Document,
        source: str,
        basename: str,
        environment: Mapping[str, str] | None,
        local_folder: str | None,
    ) -> None:
        self.checkout = checkout
        self.document = document
        self.config: dict[str, Any] = document.value
        self.source = source
        self.warnings: list[str] = []
        default_folder = "/" if "dockerComposeFile" in self.config else f"/workspaces/{basename}"
        self.variables = Variables(
            local_workspace_folder=local_folder or default_folder,
            local_workspace_folder_basename=basename,
            container_workspace_folder=None,
            env=environment,
            warnings=self.warnings,
        )
        self.commands = CommandReader(self.text, self.place, self.warnings)
        self.working_dir = self._working_dir(default_folder, cluster=local_folder is None)

    def place(self, path: JsonPath) -> str:
        return self.document.place(path)

    def text(self, value: str, path: JsonPath) -> str:
        """`value` (found at `path`) with variables substituted; refuses unusable text."""
        result = self.variables.substitute(value, lambda: self.place(path))
        if "\x00" in result:
            raise DevjobsError(self.place(path), "contains a NUL character")
        if not result.isascii():
            try:
                result.encode("utf-8")
            except UnicodeEncodeError:
                raise DevjobsError(self.place(path), "contains a lone UTF-16 surrogate") from None
        if "${" in result and LATE_VARIABLE.search(result):
            self.warnings.append(
                f"{self.place(path)}: ${{containerEnv:...}} and ${{devcontainerId}} are left "
                "as written (the reference substitutes them only in a running container)"
            )
        return result

    def _working_dir(self, default_folder: str, *, cluster: bool) -> str:
        """workspaceFolder as the reference derives it (also `${containerWorkspaceFolder}`)."""
        written = self.config.get("workspaceFolder")
        if written is not None and not isinstance(written, str):
            raise DevjobsError(self.place(["workspaceFolder"]), "workspaceFolder must be a string")
        raw = written or default_folder
        self.variables.container_workspace_folder = raw
        folder = self.text(raw, ["workspaceFolder"] if written else [])
        self.variables.container_workspace_folder = folder
        if cluster:
            self.variables.local_workspace_folder = folder
        if not folder.startswith("/"):
            raise DevjobsError(
                self.place(["workspaceFolder"]),
                f"workspaceFolder must be an absolute path, not {folder!r}",
            )
        return folder

    def read(self) -> Devcontainer:
        base = JobBase(
            source=self.source,
            file=self.document.file,
            image=self._image(),
            working_dir=self.working_dir,
            env=self._env(),
        )
        self._warn_about_features()
        jobs, skipped = setup_jobs(self.config, base, self.commands)
        setup = [job.name for job in jobs]
        # Setup job names are reserved whether or not the config uses them.
        taken: dict[str, JsonPath] = {name: [key] for key, name in SETUP_COMMANDS}
        devjobs = self._devjobs()
        tasks, task_skipped = self._tasks(base, setup, taken, devjobs.get("triggers"))
        extra, extra_skipped = self._custom_jobs(base, setup, taken, devjobs.get("jobs"))
        return Devcontainer(
            file=self.document.file,
            image=base.image,
            working_dir=base.working_dir,
            env=base.env,
            jobs=[*jobs, *tasks, *extra],
            skipped=[*skipped, *task_skipped, *extra_skipped],
            warnings=self.warnings,
        )

    # --- what every job shares -------------------------------------------------------

    def _image(self) -> str | None:
        image = self.config.get("image")
        if image is not None:
            if not isinstance(image, str) or not image.strip():
                raise DevjobsError(self.place(["image"]), "image must be a non-empty string")
            return self.text(image, ["image"])
        if "dockerComposeFile" in self.config:
            return self._compose_image()
        return None

    def _compose_image(self) -> str | None:
        from devjobs.resolver.compose import service_image

        written = self.config["dockerComposeFile"]
        files = written if isinstance(written, list) else [written]
        if not files or not all(isinstance(item, str) and item for item in files):
            raise DevjobsError(
                self.place(["dockerComposeFile"]),
                "dockerComposeFile must be a path or an array of paths",
            )
        service = self.config.get("service")
        if not isinstance(service, str) or not service:
            raise DevjobsError(
                self.place(["service"] if "service" in self.config else []),
                "a dockerComposeFile config needs the name of its service in `service`",
            )
        paths = [
            self.text(
                item,
                ["dockerComposeFile", index]
                if isinstance(written, list)
                else ["dockerComposeFile"],
            )
            for index, item in enumerate(files)
        ]
        image, warnings = service_image(
            self.checkout, self.document.file, paths, self.text(service, ["service"])
        )
        self.warnings.extend(warnings)
        return image

    def _env(self) -> dict[str, str]:
        """containerEnv overlaid by remoteEnv; a null remoteEnv value unsets a variable."""
        env: dict[str, str] = {}
        for key in ("containerEnv", "remoteEnv"):
            values = self.config.get(key)
            if values is None:
                continue
            if not isinstance(values, dict):
                raise DevjobsError(self.place([key]), f"{key} must be an object")
            for name, value in values.items():
                path = [key, name]
                if not ENV_NAME.match(name):
                    raise DevjobsError(
                        self.place(path), f"{name!r} is not a valid environment variable name"
                    )
                if value is None and key == "remoteEnv":
                    env.pop(name, None)
                    continue
                if not isinstance(value, str):
                    raise DevjobsError(self.place(path), f"{key} values must be strings")
                if "${containerEnv:" in value:
                    self.warnings.append(
                        f"{self.place(path)}: {name} refers to ${{containerEnv:...}}, which "
                        "only exists in a running container; left out of the jobs' environment"
                    )
                    env.pop(name, None)
                    continue
                env[name] = self.text(value, path)
        return env

    def _warn_about_features(self) -> None:
        features = self.config.get("features")
        if isinstance(features, dict) and features:
            self.warnings.append(
                f"{self.place(['features'])}: devjobs cannot install features "
                f"({', '.join(sorted(features))}); jobs run without them"
            )

    # --- tasks and customizations.devjobs ----------------------------------------------

    def _devjobs(self) -> dict[str, Any]:
        customizations = self.config.get("customizations")
        if not isinstance(customizations, dict) or "devjobs" not in customizations:
            return {}
        devjobs = customizations["devjobs"]
        if not isinstance(devjobs, dict):
            raise DevjobsError(self.place(DEVJOBS), "customizations.devjobs must be an object")
        for key in devjobs:
            if key not in ("triggers", "jobs"):
                raise DevjobsError(
                    self.place([*DEVJOBS, key]),
                    f"unknown key {key!r} in customizations.devjobs (known: triggers, jobs)",
                )
        return devjobs

    def _name(self, written: str, path: JsonPath, taken: dict[str, JsonPath]) -> str:
        name = written
        if not is_valid_name(written):  # places are computed only when needed: O(file)
            name, warning = normalise_name(written, self.place(path))
            if warning:
                self.warnings.append(warning)
        if name in taken:
            raise DevjobsError(
                self.place(path),
                f"job name {name!r} is already used at {jsonc.pointer(taken[name])}",
            )
        taken[name] = path
        return name

    def _tasks(
        self,
        base: JobBase,
        setup: list[str],
        taken: dict[str, JsonPath],
        triggers_written: object,
    ) -> tuple[list[JobConfig], list[SkippedItem]]:
        tasks = self.config.get("tasks")
        if tasks is None:
            tasks = {}
        if not isinstance(tasks, dict):
            raise DevjobsError(self.place(["tasks"]), "tasks must be an object: name → command")
        names = {key: self._name(key, ["tasks", key], taken) for key in tasks}
        triggers = self._triggers(triggers_written, names)
        jobs: list[JobConfig] = []
        skipped: list[SkippedItem] = []
        for key, value in tasks.items():
            path = ["tasks", key]
            command = self.commands.read(value, path)
            if command is None:
                skipped.append(base.skipped(path, "empty command"))
                continue
            trigger = triggers.get(key, Trigger.MANUAL)
            jobs.append(base.job(names[key], trigger, command, path, setup=list(setup)))
        return jobs, skipped

    def _triggers(self, written: object, names: dict[str, str]) -> dict[str, Trigger]:
        """Task key → trigger; keys may name a task as written or as normalised."""
        if written is None:
            return {}
        path = [*DEVJOBS, "triggers"]
        if not isinstance(written, dict):
            raise DevjobsError(self.place(path), "triggers must be an object: task → trigger")
        by_name = {name: key for key, name in names.items()}
        triggers: dict[str, Trigger] = {}
        for task, value in written.items():
            key = task if task in names else by_name.get(task)
            if key is None:
                raise DevjobsError(self.place([*path, task]), f"no task named {task!r}")
            if not isinstance(value, str) or value not in Trigger._value2member_map_:
                raise DevjobsError(
                    self.place([*path, task]),
                    f"unknown trigger {value!r} (expected one of {TRIGGERS})",
                )
            triggers[key] = Trigger(value)
        return triggers

    def _custom_jobs(
        self, base: JobBase, setup: list[str], taken: dict[str, JsonPath], written: object
    ) -> tuple[list[JobConfig], list[SkippedItem]]:
        if written is None:
            return [], []
        root = [*DEVJOBS, "jobs"]
        if not isinstance(written, dict):
            raise DevjobsError(self.place(root), "jobs must be an object: name → job")
        jobs: list[JobConfig] = []
        skipped: list[SkippedItem] = []
        for key, definition in written.items():
            path = [*root, key]
            name = self._name(key, path, taken)
            spec = self._job_spec(key, definition, path)
            if not spec.enabled:
                skipped.append(base.skipped(path, "enabled: false"))
                continue
            if spec.command is None:
                raise DevjobsError(self.place(path), f"job {key!r} has no command")
            command = self.commands.read(definition["command"], [*path, "command"])
            if command is None:
                skipped.append(base.skipped(path, "empty command"))
                continue
            jobs.append(self._custom_job(base, setup, name, spec, command, path))
        return jobs, skipped

    def _job_spec(self, key: str, definition: object, path: JsonPath) -> JobSpec:
        if not isinstance(definition, dict):
            raise DevjobsError(self.place(path), "a job must be an object")
        if "name" in definition:
            raise DevjobsError(
                self.place([*path, "name"]), "the job's name is its key; remove `name`"
            )
        try:
            return JobSpec.read({**definition, "name": key})
        except InvalidField as error:
            at = _existing_prefix(definition, error.path)
            field = ".".join(str(part) for part in error.path) or "job"
            raise DevjobsError(self.place([*path, *at]), f"{field}: {error.message}") from None

    def _custom_job(
        self,
        base: JobBase,
        setup: list[str],
        name: str,
        spec: JobSpec,
        command: Command,
        path: JsonPath,
    ) -> JobConfig:
        image = base.image if spec.image is None else self.text(spec.image, [*path, "image"])
        if image is not None and not image.strip():
            raise DevjobsError(self.place([*path, "image"]), "image must not be empty")
        own_image = spec.image is not None and image != base.image
        runs_setup = spec.setup if spec.setup is not None else not own_image
        env: dict[str, EnvValue] = dict(base.env)
        for variable, value in (spec.env or {}).items():
            if not ENV_NAME.match(variable):
                raise DevjobsError(
                    self.place([*path, "env", variable]),
                    f"{variable!r} is not a valid environment variable name",
                )
            # A reference is the cluster's to resolve: nothing in it is substituted.
            env[variable] = (
                value
                if isinstance(value, EnvVarSource)
                else self.text(value, [*path, "env", variable])
            )
        working_dir = (
            base.working_dir
            if spec.working_dir is None
            else self.text(spec.working_dir, [*path, "workingDir"])
        )
        if not working_dir.startswith("/"):
            raise DevjobsError(
                self.place([*path, "workingDir"]),
                f"workingDir must be an absolute path, not {working_dir!r}",
            )
        return base.job(
            name,
            spec.trigger or Trigger.MANUAL,
            command,
            path,
            image=image,
            env=env,
            working_dir=working_dir,
            timeout_seconds=spec.timeout_seconds,
            retries=spec.retries or 0,
            run_as=spec.run_as or RunAs.JOB,
            setup=list(setup) if runs_setup else [],
            env_from=list(spec.env_from or []),
            runtime_context=spec.runtime_context,
        )


def _existing_prefix(value: object, loc: tuple[int | str, ...]) -> list[str | int]:
    """The longest prefix of an error's path that exists in `value` (a missing field's
    place is its parent's)."""
    found: list[str | int] = []
    for part in loc:
        in_object = isinstance(value, dict) and isinstance(part, str) and part in value
        in_array = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if not (in_object or in_array):
            break
        value = value[part]  # type: ignore[index]
        found.append(part)
    return found
