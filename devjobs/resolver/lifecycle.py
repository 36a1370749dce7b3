"""Lifecycle commands (`onCreateCommand`, ...) and the three command forms as jobs.

The reference runs a string as `/bin/sh -c STRING`, an array as an exec argv with no
shell, and an object as parallel steps (each value a string or an array) that must
all succeed; it skips a command that is empty (blank string, `[]`, `{}`). The three
setup commands become init-container jobs that run before the workload, in the
reference's order; the other hooks have no counterpart in a preview environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devjobs.errors import DevjobsError
from devjobs.resolver.jsonc import JsonPath, pointer
from devjobs.resolver.models import JobConfig, Origin, RunAs, SkippedItem, Trigger

SETUP_COMMANDS: tuple[tuple[str, str], ...] = (
    ("onCreateCommand", "on-create"),
    ("updateContentCommand", "update-content"),
    ("postCreateCommand", "post-create"),
)
"""devcontainer.json key → setup job name, in the order the reference runs them."""

NOT_JOBS: dict[str, str] = {
    "initializeCommand": (
        "runs on the machine that creates the container, before it exists; "
        "devjobs runs nothing outside the environment"
    ),
    "postStartCommand": (
        "runs each time a development container starts; preview environment jobs have no such point"
    ),
    "postAttachCommand": (
        "runs each time an editor attaches; nothing attaches to a preview environment"
    ),
}

SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True)
class Command:
    """A command in exec form: exactly one of `argv` and `parallel` is set."""

    argv: list[str] | None = None
    parallel: dict[str, list[str]] | None = None


Text = Callable[[str, JsonPath], str]
"""Substitutes variables in (and checks) the string found at a path."""
Place = Callable[[JsonPath], str]
"""`file:line:col` of the value at a path, for errors and warnings."""


@dataclass
class CommandReader:
    """Turns a command as written into a `Command`, or None when it is empty."""

    text: Text
    place: Place
    warnings: list[str] = field(default_factory=list)

    def read(self, value: object, path: JsonPath) -> Command | None:
        if value is None:
            return None
        if isinstance(value, str):
            return self._shell(value, path)
        if isinstance(value, list):
            return Command(argv=self._argv(value, path)) if value else None
        if isinstance(value, dict):
            return self._parallel(value, path)
        raise DevjobsError(
            self.place(path),
            "a command must be a string, an array of strings or an object of those",
        )

    def _shell(self, value: str, path: JsonPath) -> Command | None:
        script = self.text(value, path)
        return Command(argv=[*SHELL, script]) if script.strip() else None

    def _argv(self, items: list[object], path: JsonPath) -> list[str]:
        argv = []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise DevjobsError(
                    self.place([*path, index]), "a command array must hold only strings"
                )
            argv.append(self.text(item, [*path, index]))
        if not argv[0]:
            raise DevjobsError(self.place([*path, 0]), "the program (first item) is empty")
        return argv

    def _parallel(self, entries: dict[str, object], path: JsonPath) -> Command | None:
        parallel: dict[str, list[str]] = {}
        for name, entry in entries.items():
            entry_path = [*path, name]
            if isinstance(entry, str):
                command = self._shell(entry, entry_path)
                argv = command.argv if command else None
            elif isinstance(entry, list):
                argv = self._argv(entry, entry_path) if entry else None
            else:
                raise DevjobsError(
                    self.place(entry_path),
                    "a parallel command entry must be a string or an array of strings",
                )
            if argv is None:
                self.warnings.append(f"{self.place(entry_path)}: empty command {name!r} ignored")
            else:
                parallel[name] = argv
        return Command(parallel=parallel) if parallel else None


@dataclass(frozen=True)
class JobBase:
    """What every job of one devcontainer shares unless it says otherwise."""

    source: str
    file: str
    image: str | None
    working_dir: str
    env: dict[str, str]

    def origin(self, path: JsonPath) -> Origin:
        return Origin(kind="devcontainer", file=self.file, pointer=pointer(path))

    def skipped(self, path: JsonPath, reason: str) -> SkippedItem:
        return SkippedItem(source=self.source, pointer=pointer(path), reason=reason)

    def job(
        self, name: str, trigger: Trigger, command: Command, path: JsonPath, **fields: Any
    ) -> JobConfig:
        values: dict[str, Any] = {
            "name": name,
            "source": self.source,
            "trigger": trigger,
            "command": command.argv,
            "parallel": command.parallel,
            "image": self.image,
            "working_dir": self.working_dir,
            "env": dict(self.env),
            "origins": [self.origin(path)],
        }
        values.update(fields)
        return JobConfig(**values)


def setup_jobs(
    config: Mapping[str, object], base: JobBase, reader: CommandReader
) -> tuple[list[JobConfig], list[SkippedItem]]:
    """The setup jobs (on-create, update-content, post-create) and the hooks skipped."""
    jobs: list[JobConfig] = []
    skipped: list[SkippedItem] = []
    for key, name in SETUP_COMMANDS:
        if key not in config:
            continue
        command = reader.read(config[key], [key])
        if command is None:
            skipped.append(base.skipped([key], "empty command"))
            continue
        jobs.append(base.job(name, Trigger.PRE_DEPLOY, command, [key], run_as=RunAs.INIT_CONTAINER))
    for key, reason in NOT_JOBS.items():
        if key in config:
            skipped.append(base.skipped([key], f"{key} is not a job: {reason}"))
    return jobs, skipped
