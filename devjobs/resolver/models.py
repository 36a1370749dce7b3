"""The contract between the resolver and the runner.

The resolver turns a repository's devcontainer.json and a Project CR into a `JobPlan`;
everything that runs jobs (the Kubernetes runner, the local runner, the controller)
consumes only these models. Field names serialise in camelCase, as in Kubernetes.

They are frozen stdlib dataclasses, not pydantic models: only devjobs' own code builds
them (user input is checked on the way in, by `devjobs.resolver.jobspec` and
`devjobs.resolver.project`), and importing pydantic would more than double the start-up
time of `devjobs plan` (bench/README.md). Pydantic still reads them: `devjobs.schemas`
generates `schemas/jobplan.schema.json` from these classes, honouring
`__pydantic_config__` and the `Schema` annotations, and a test checks every corpus plan
against that schema. Invariants that the schema cannot say are in `__post_init__`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Annotated, Any, Literal, TypeVar

from devjobs.errors import DevjobsError

API_VERSION: Literal["devjobs.dev/v1alpha1"] = "devjobs.dev/v1alpha1"


def wire_name(name: str) -> str:
    """A field's name on the wire: `working_dir` -> `workingDir` (Kubernetes style)."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class Schema:
    """JSON Schema keywords for an `Annotated` type, added by pydantic when
    `devjobs.schemas` generates the schema (pydantic's documented
    `__get_pydantic_json_schema__` hook). Checking them is `__post_init__`'s job."""

    keywords: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> Any:
        schema = handler(core_schema)
        schema.update(self.keywords)
        return schema


Argv = Annotated[list[str], Schema((("minItems", 1),))]
"""A command as an exec argv: the first item is the program."""


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


class InvalidJob(ValueError):
    """A `JobConfig` that breaks one of its invariants; `field` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


OMIT_IF_NONE = {"omit_if_none": True}
"""Field metadata: a None value is left out of the wire form rather than sent as null."""
INTERNAL = {"internal": True}
"""Field metadata: bookkeeping of devjobs', never on the wire nor in a schema."""


def wire_value(value: Any) -> Any:
    """The JSON-compatible form of a model (or anything inside one): camelCase keys,
    enums as their values, lists for tuples, `OMIT_IF_NONE` fields left out when None."""
    if isinstance(value, enum.Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {
            wire_name(f.name): wire_value(item)
            for f in fields(value)
            if not f.metadata.get("internal")
            and ((item := getattr(value, f.name)) is not None or not f.metadata.get("omit_if_none"))
        }
    if isinstance(value, list | tuple):
        return [wire_value(item) for item in value]
    if isinstance(value, dict):
        return {key: wire_value(item) for key, item in value.items()}
    return value


WIRE_CONFIG = {"alias_generator": wire_name, "extra": "forbid"}
"""pydantic's config for these dataclasses (read only by `devjobs.schemas`)."""


@dataclass(frozen=True, kw_only=True)
class Origin:
    """Where a job's fields came from, so `devjobs plan` can point at the line to edit."""

    __pydantic_config__ = WIRE_CONFIG

    kind: Literal["devcontainer", "project", "commandLine"]
    file: str
    """Path relative to the source checkout (devcontainer) or as given (Project CR file)."""
    pointer: str
    """RFC 6901 JSON pointer into that file, e.g. `/tasks/test` or `/spec/sources/0/jobs/1`."""


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    """One fully resolved job: everything a runner needs, nothing it must look up again."""

    __pydantic_config__ = WIRE_CONFIG

    name: str
    """A valid Kubernetes name (RFC 1123 label), unique within its source."""
    source: str
    trigger: Trigger
    run_as: RunAs = RunAs.JOB
    command: Argv | None = field(default=None, metadata=OMIT_IF_NONE)
    parallel: dict[str, Argv] | None = field(default=None, metadata=OMIT_IF_NONE)
    """Entries run concurrently; all must succeed. Exactly one of command/parallel is set:
    only that one appears on the wire."""
    image: str | None = None
    """None means "the environment's build image", filled in by the runner."""
    working_dir: str
    env: dict[str, EnvValue] = field(default_factory=dict)
    """In order: a later value may refer to an earlier one as `$(NAME)` (in a cluster)."""
    timeout_seconds: Annotated[int, Schema((("exclusiveMinimum", 0),))] | None = None
    retries: Annotated[int, Schema((("minimum", 0),))] = 0
    setup: list[str] = field(default_factory=list)
    """Names of this source's setup jobs (on-create, ...) to run first in the same
    container, as the reference runs lifecycle commands before any user command."""
    env_from: list[EnvFromSource] = field(default_factory=list)
    """Further Secrets and ConfigMaps whose keys become variables (in a cluster)."""
    runtime_context: bool | None = field(default=None, metadata=OMIT_IF_NONE)
    """Whether the job gets the environment's runtime context in a cluster: the env and
    envFrom of its workload's main container and DEVJOBS_ENVIRONMENT_URL. None: yes for
    jobs in the environment's build image (`image: null`), no for others."""
    origins: list[Origin] = field(default_factory=list)
    """Lowest precedence first."""

    def __post_init__(self) -> None:
        if (self.command is None) == (self.parallel is None):
            raise InvalidJob("command", "exactly one of command or parallel must be set")
        if self.command is not None and not self.command:
            raise InvalidJob("command", "a command needs at least the program")
        if self.parallel is not None:
            if not self.parallel:
                raise InvalidJob("command", "parallel must have at least one entry")
            if not all(self.parallel.values()):
                raise InvalidJob("command", "every parallel entry needs at least the program")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise InvalidJob("timeout_seconds", "timeoutSeconds must be greater than 0")
        if self.retries < 0:
            raise InvalidJob("retries", "retries must not be negative")

    @property
    def key(self) -> str:
        """`source/name`: unique within a plan."""
        return f"{self.source}/{self.name}"

    @property
    def gets_runtime_context(self) -> bool:
        return self.runtime_context if self.runtime_context is not None else self.image is None


@dataclass(frozen=True, kw_only=True)
class NameRef:
    """`secretRef` / `configMapRef` of Kubernetes' EnvFromSource."""

    __pydantic_config__ = WIRE_CONFIG

    name: Annotated[str, Schema((("minLength", 1), ("maxLength", 253)))]
    optional: bool | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass(frozen=True, kw_only=True)
class EnvFromSource:
    """Kubernetes' EnvFromSource: every key of one Secret or ConfigMap as a variable."""

    __pydantic_config__ = WIRE_CONFIG

    secret_ref: NameRef | None = field(default=None, metadata=OMIT_IF_NONE)
    config_map_ref: NameRef | None = field(default=None, metadata=OMIT_IF_NONE)
    prefix: str | None = field(default=None, metadata=OMIT_IF_NONE)

    def __post_init__(self) -> None:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise InvalidJob("envFrom", "each entry names exactly one of secretRef, configMapRef")

    def describe(self) -> str:
        """For messages: `Secret 'db'`, `ConfigMap 'flags' (prefix APP_)`."""
        kind, ref = _which(self.secret_ref, self.config_map_ref)
        prefix = f" (prefix {self.prefix})" if self.prefix else ""
        return f"{kind} {ref.name!r}{prefix}"


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Secret's or ConfigMap's name as Kubernetes validates it (RFC 1123 subdomain)."""
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
"""A key of a Secret or ConfigMap as Kubernetes validates it. Kubernetes also refuses `.`
and keys starting with `..`, which the reader checks: the API server reads a CRD's
patterns as RE2, which has no look-ahead to say it."""


@dataclass(frozen=True, kw_only=True)
class KeySelector:
    """`secretKeyRef` / `configMapKeyRef` of Kubernetes' EnvVarSource: one key of one
    Secret or ConfigMap in the job's namespace."""

    __pydantic_config__ = WIRE_CONFIG

    name: Annotated[str, Schema((("minLength", 1), ("maxLength", 253), ("pattern", DNS_SUBDOMAIN)))]
    key: Annotated[str, Schema((("minLength", 1), ("maxLength", 253), ("pattern", DATA_KEY)))]
    optional: bool | None = field(default=None, metadata=OMIT_IF_NONE)
    """true: the job starts without the variable when the object or key is missing."""


@dataclass(frozen=True, kw_only=True)
class EnvVarSource:
    """A variable taken from one key of a Secret or ConfigMap when the job's pod starts:
    Kubernetes' EnvVarSource with exactly one of `secretKeyRef`, `configMapKeyRef`.
    devjobs never reads the value; it masks a Secret's in kept logs."""

    __pydantic_config__ = WIRE_CONFIG

    secret_key_ref: KeySelector | None = field(default=None, metadata=OMIT_IF_NONE)
    config_map_key_ref: KeySelector | None = field(default=None, metadata=OMIT_IF_NONE)

    def __post_init__(self) -> None:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise InvalidJob(
                "env", "a reference names exactly one of secretKeyRef, configMapKeyRef"
            )

    def describe(self) -> str:
        """For messages: `key 'url' of Secret 'db'`."""
        kind, ref = _which(self.secret_key_ref, self.config_map_key_ref)
        return f"key {ref.key!r} of {kind} {ref.name!r}"


EnvValue = str | EnvVarSource
"""A job variable: its value, or the key of a Secret or ConfigMap the cluster takes it from."""

R = TypeVar("R")


def _which(secret: R | None, config_map: R | None) -> tuple[Literal["Secret", "ConfigMap"], R]:
    """The kind and reference of a Secret-or-ConfigMap pair, of which one is set."""
    if secret is not None:
        return "Secret", secret
    assert config_map is not None
    return "ConfigMap", config_map


@dataclass(frozen=True, kw_only=True)
class SkippedItem:
    """Something in the inputs that deliberately did not become a job, and why."""

    __pydantic_config__ = WIRE_CONFIG

    source: str
    pointer: str
    reason: str
    file: str | None = None
    """The file `pointer` points into (devcontainer.json relative to the source, or the
    Project file)."""


@dataclass(frozen=True, kw_only=True)
class SourceInfo:
    """A source as the plan saw it: where runners clone it from and at which commit."""

    __pydantic_config__ = WIRE_CONFIG

    name: str
    repository_url: str | None = None
    branch: str | None = None
    commit_sha: str | None = None
    """The commit the plan was read at (None for an uncommitted local directory)."""
    devcontainer_file: str | None = None
    """Path of the devcontainer.json used, relative to the checkout; None when none."""
    local_path: str | None = None
    """Set when the source is a local directory given with `--source NAME=DIR`."""


@dataclass(frozen=True, kw_only=True)
class JobPlan:
    """What `devjobs plan` prints and every runner consumes."""

    __pydantic_config__ = WIRE_CONFIG

    api_version: Literal["devjobs.dev/v1alpha1"] = API_VERSION
    kind: Literal["JobPlan"] = "JobPlan"
    sources: list[SourceInfo] = field(default_factory=list)
    jobs: list[JobConfig] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        """The `-o json|yaml` document (see schemas/jobplan.schema.json)."""
        data: dict[str, Any] = wire_value(self)
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
