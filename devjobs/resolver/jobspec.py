"""A job as a user writes it: `spec.sources[i].jobs[]` of a Project CR, or
`customizations.devjobs.jobs` of devcontainer.json.

This is untrusted input, read strictly by `JobSpec.read` (see `devjobs.resolver.fields`);
its errors carry the path of the offending value, which `devjobs.resolver.project` and
`devjobs.resolver.devcontainer` turn into `file:line:col: field: message`. The class is
also the source of the job's JSON Schema and of the Project CRD's `jobs` (pydantic reads
it in `devjobs.schemas`, as it reads the plan's models); tests/test_fields_contract.py
checks the reader against that schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Annotated, TypeVar

from devjobs.resolver.fields import (
    FieldPath,
    Fields,
    InvalidField,
    string,
    string_list,
    type_name,
)
from devjobs.resolver.models import (
    DATA_KEY,
    DNS_SUBDOMAIN,
    INTERNAL,
    WIRE_CONFIG,
    Argv,
    EnvFromSource,
    EnvValue,
    EnvVarSource,
    KeySelector,
    NameRef,
    RunAs,
    Schema,
    Trigger,
    wire_name,
)

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What a POSIX shell (and Kubernetes' EnvVar validation in practice) accepts as a name."""
OBJECT_NAME = re.compile(DNS_SUBDOMAIN.removesuffix("$"))
KEY_NAME = re.compile(DATA_KEY.removesuffix("$"))
"""Matched whole (`fullmatch`): the schema's `$` means the end of the text, as in
Kubernetes' regexp dialect, where Python's `$` also matches before a final newline."""
MAX_NAME = 253

Command = Argv | str | dict[str, Argv | str]
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A job as written by a user: in `spec.sources[i].jobs[]` of a Project CR, or in
    `customizations.devjobs.jobs` of devcontainer.json. Every field but `name` is
    optional, so a spec can override just what it sets (see `given`)."""

    __pydantic_config__ = WIRE_CONFIG

    name: Annotated[str, Schema((("minLength", 1),))]
    """The job's name; a job of the devcontainer with this name is overridden."""
    trigger: Trigger | None = None
    """When it runs: PostBuild, PreDeploy (blocking), PostDeploy or Manual (default)."""
    command: Command | None = None
    """An argv list (exec, no shell); in files also a shell string, or an object whose
    entries run in parallel, as in devcontainer.json."""
    image: str | None = None
    """Container image; null: the environment's build image. Default: the devcontainer's
    image for devcontainer jobs, else the build image."""
    env: dict[str, EnvValue] | None = None
    """Environment variables, overlaid on the devcontainer's: a value, or one key of a
    Secret or ConfigMap as Kubernetes' `valueFrom` (`{"secretKeyRef": {"name": "db",
    "key": "url"}}`, `configMapKeyRef`, optional `optional`); values read from Secrets are
    masked in kept logs."""
    working_dir: str | None = None
    """Default: the devcontainer's workspaceFolder, else /workspaces/<repository name>."""
    timeout_seconds: Annotated[int, Schema((("exclusiveMinimum", 0),))] | None = None
    """The job fails when it runs longer (activeDeadlineSeconds)."""
    retries: Annotated[int, Schema((("minimum", 0),))] | None = None
    """Attempts after the first failure (backoffLimit); default 0."""
    run_as: RunAs | None = None
    """Job (default), or InitContainer of the environment's workload (PreDeploy only)."""
    enabled: bool = True
    """false removes the job (e.g. a devcontainer task this Project does not want)."""
    setup: bool | None = None
    """Whether the devcontainer's setup steps (onCreateCommand, ...) run first. Default:
    yes for jobs in the devcontainer's image, no for others."""
    env_from: list[EnvFromSource] | None = None
    """Secrets and ConfigMaps whose keys become the job's variables, as Kubernetes'
    envFrom (`secretRef`/`configMapRef` with `name`, optional `prefix`); values read from
    Secrets are masked in kept logs."""
    runtime_context: bool | None = None
    """Whether the job runs with the environment's runtime context: its workload's
    environment variables and envFrom (Catalyst's `catalyst-secrets`) and
    DEVJOBS_ENVIRONMENT_URL. Default: yes for jobs in the environment's build image."""
    given: frozenset[str] = field(default=frozenset(), metadata=INTERNAL)
    """The attributes the user wrote (null included): what an override overrides."""

    @classmethod
    def read(cls, value: object, path: FieldPath = ()) -> JobSpec:
        """Check and convert a job object; raises InvalidField at the offending value."""
        fields = Fields(value, path, ATTRIBUTES)
        env = _env(fields) if fields.raw("env") is not None else None
        working_dir = fields.string("workingDir")
        if working_dir is not None and not working_dir.startswith("/"):
            raise InvalidField(
                fields.at("workingDir"), f"workingDir must be an absolute path, not {working_dir!r}"
            )
        return cls(
            name=fields.required_string("name"),
            trigger=fields.choice("trigger", Trigger),
            command=_command(fields.raw("command"), fields.at("command")),
            image=fields.string("image"),
            env=env,
            working_dir=working_dir,
            timeout_seconds=fields.integer("timeoutSeconds", 0, exclusive=True),
            retries=fields.integer("retries", 0),
            run_as=fields.choice("runAs", RunAs),
            enabled=fields.flag("enabled", True),
            setup=fields.boolean("setup"),
            env_from=_env_from(fields) if fields.raw("envFrom") is not None else None,
            runtime_context=fields.boolean("runtimeContext"),
            given=frozenset(ATTRIBUTES[key] for key in fields.given),
        )


ATTRIBUTES = {wire_name(f.name): f.name for f in fields(JobSpec) if not f.metadata.get("internal")}
"""A job's fields: wire name (`workingDir`) -> attribute name (`working_dir`)."""


def _env(fields: Fields) -> dict[str, EnvValue]:
    """`env`: name -> a string, or one key of a Secret or ConfigMap (Kubernetes'
    EnvVarSource, exactly one of `secretKeyRef`, `configMapKeyRef`)."""
    env = fields.mapping("env")
    values: dict[str, EnvValue] = {}
    for key, raw in env.value.items():
        name = str(key)
        at = env.at(name)
        if isinstance(raw, str):
            values[name] = raw
        elif isinstance(raw, Mapping):
            refs = _one_of(Fields(raw, at, KEY_REFS), KEY_REFS, KEY_FIELDS, _key_selector)
            values[name] = EnvVarSource(
                secret_key_ref=refs.get("secretKeyRef"),
                config_map_key_ref=refs.get("configMapKeyRef"),
            )
        else:
            raise InvalidField(
                at,
                f"must be a string or an object with secretKeyRef or configMapKeyRef, "
                f"not {type_name(raw)}",
            )
    for name in values:
        if not ENV_NAME.match(name):
            raise InvalidField(
                fields.at("env"), f"{name!r} is not a valid environment variable name"
            )
    return values


KEY_REFS = ("secretKeyRef", "configMapKeyRef")
KEY_FIELDS = ("name", "key", "optional")


def _one_of(
    entry: Fields, kinds: tuple[str, ...], known: tuple[str, ...], read: Callable[[Fields], R]
) -> dict[str, R]:
    """The one reference of `entry` among `kinds` (each an object of `known` fields)."""
    refs = {kind: read(entry.mapping(kind, known)) for kind in kinds if entry.raw(kind) is not None}
    if len(refs) != 1:
        raise InvalidField(entry.path, f"must name exactly one of {', '.join(kinds)}")
    return refs


def _bounded(ref: Fields, key: str) -> str:
    """A required name of at most 253 characters, as Kubernetes bounds object names and keys."""
    value = ref.required_string(key)
    if len(value) > MAX_NAME:
        raise InvalidField(ref.at(key), f"must be at most {MAX_NAME} characters")
    return value


def _name_ref(ref: Fields) -> NameRef:
    # `optional: null` is as absent, as the API server drops it.
    return NameRef(name=_bounded(ref, "name"), optional=ref.boolean("optional"))


def _key_selector(ref: Fields) -> KeySelector:
    """One key of a Secret or ConfigMap, checked as Kubernetes checks a pod's, so that a
    mistake is an error at its place in the file rather than a Job the API server refuses."""
    name = _bounded(ref, "name")
    if not OBJECT_NAME.fullmatch(name):
        raise InvalidField(
            ref.at("name"),
            f"{name!r} is not a valid object name: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit",
        )
    key = _bounded(ref, "key")
    if not KEY_NAME.fullmatch(key):
        raise InvalidField(
            ref.at("key"), f"{key!r} is not a valid key: only letters, digits, '-', '_' and '.'"
        )
    if key == "." or key.startswith(".."):
        raise InvalidField(ref.at("key"), f"{key!r} is not a valid key: {NOT_A_PATH}")
    return KeySelector(name=name, key=key, optional=ref.boolean("optional"))


NOT_A_PATH = "must not be '.' or start with '..'"
"""Kubernetes' rule for keys beyond their pattern (a key becomes a file name in volumes)."""


def _env_from(fields: Fields) -> list[EnvFromSource]:
    """`envFrom`: each entry exactly one of `secretRef`, `configMapRef`, with a `name`."""
    sources = []
    for index, raw in enumerate(fields.array("envFrom")):
        entry = Fields(raw, (*fields.at("envFrom"), index), ("secretRef", "configMapRef", "prefix"))
        refs = _one_of(entry, ("secretRef", "configMapRef"), ("name", "optional"), _name_ref)
        prefix = entry.string("prefix")
        if prefix is None and "prefix" in entry.given:
            raise InvalidField(entry.at("prefix"), "must be a string, not null")
        if prefix is not None and not ENV_NAME.match(prefix):
            raise InvalidField(entry.at("prefix"), f"{prefix!r} is not a valid variable prefix")
        sources.append(
            EnvFromSource(
                secret_ref=refs.get("secretRef"),
                config_map_ref=refs.get("configMapRef"),
                prefix=prefix,
            )
        )
    return sources


def _command(value: object, path: FieldPath) -> Command | None:
    """One of the three devcontainer command forms, each doing something."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise InvalidField(path, "command must not be empty")
        return value
    if isinstance(value, list):
        argv = string_list(value, path, min_items=1)
        if not argv[0]:
            raise InvalidField((*path, 0), "the program (first item) must not be empty")
        return argv
    if isinstance(value, dict):
        if not value:
            raise InvalidField(path, "a parallel command needs at least one entry")
        entries: dict[str, Argv | str] = {}
        for key, entry in value.items():
            at = (*path, str(key))
            entries[str(key)] = (
                string_list(entry, at, min_items=1)
                if isinstance(entry, list)
                else string(entry, at)
            )
        return entries
    raise InvalidField(path, "must be a string, a list of strings or an object")
