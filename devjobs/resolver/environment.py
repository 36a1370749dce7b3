"""A Catalyst Environment: the object every run belongs to, read one way by both halves.

The resolver reads its per-source pins (which commit or branch a plan is for); the
runner and the controller also need its uid, generation, Project and type. One reader
checks the whole object once, from a YAML/JSON file or from what the API server
returned, and every error names its place as the Project reader's do:
`file:line:col: spec.sources[0].name: message`, or `Environment ns/name: ...` for an API
object. Plain dataclasses, no pydantic: `devjobs status` and `logs` read one on every
start.

Catalyst's CRD (`../shared/fixtures/catalyst/`) requires `spec.projectRef` and
`spec.type`, and so does this reader, with `metadata.namespace` (everything the runner
creates goes there), except for a plan (`pins_only`), which reads only the pins: a
hand-written file for `devjobs plan --environment` may leave the rest out. The sources'
`branch` and `commitSha` are optional (a file may pin only one of them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from devjobs import catalyst
from devjobs.catalyst import API_VERSION
from devjobs.errors import DevjobsError
from devjobs.resolver.documents import Document, load_documents, object_document
from devjobs.resolver.fields import Fields, InvalidField

KIND = "Environment"
PLURAL = "environments"


@dataclass(frozen=True)
class EnvironmentSource:
    """`spec.sources[i]`: which commit of a Project source this environment runs."""

    name: str
    branch: str | None = None
    commit_sha: str | None = None
    pr_number: int | None = None

    @property
    def pinned_commit(self) -> str | None:
        """The commit, if one is pinned (Catalyst writes "HEAD" for "none yet")."""
        return self.commit_sha if self.commit_sha and self.commit_sha != "HEAD" else None

    @property
    def revision(self) -> str | None:
        """What to check out: the pinned commit, else the branch."""
        return self.pinned_commit or self.branch or None


@dataclass(frozen=True)
class Environment:
    namespace: str
    """Empty only when read `pins_only` from a file without one."""
    name: str
    uid: str
    """Empty for a hand-written file; rendering then uses a stable placeholder."""
    project: str
    """`spec.projectRef.name`; empty only when read `pins_only` from a file without it."""
    type: str
    """Empty only when read `pins_only` from a file without it."""
    generation: int = 0
    deployment_mode: str | None = None
    sources: tuple[EnvironmentSource, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    """`metadata.labels`: Catalyst's place of the Environment (`catalyst.hierarchy`)."""
    url: str = ""
    """`status.url`, where Catalyst serves it (empty before it is known)."""
    document: Document | None = field(default=None, compare=False, repr=False)
    """Where it was read from, for the places of later errors (see `where`)."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def where(self, pointer: str) -> str:
        """`file:line:col: field.path` of a field of this Environment."""
        if self.document is None:
            return f"Environment {self.ref}: {pointer}"
        return self.document.where(pointer)

    @property
    def place(self) -> catalyst.Place:
        """Where Catalyst keeps this Environment's objects, and devjobs its Jobs."""
        return catalyst.place(self.namespace, dict(self.labels))

    @property
    def jobs_namespace(self) -> str:
        """Where devjobs' Jobs, their pods and log records for it live: the target
        namespace, beside the builds and the workload."""
        return self.place.target_namespace

    def mode(self, template_type: str | None) -> str:
        """The operator's deployment mode for it (`template_type`: the Project template's
        `type`, when known)."""
        return catalyst.deployment_mode(self.deployment_mode, self.type, template_type)

    def main_container(self, template_type: str | None) -> str:
        """Its workload's main container in its deployment mode."""
        return catalyst.workload(self.mode(template_type)).container

    def source(self, name: str) -> EnvironmentSource | None:
        for source in self.sources:
            if source.name == name:
                return source
        return None

    def owner_reference(self) -> dict[str, Any]:
        """Owner reference so everything devjobs creates (Jobs, log-tail ConfigMaps) goes
        when the Environment goes.

        `controller: true`: the Environment is the one managing owner of these objects
        (devjobs acts for it, they have no other owner, and nothing else may adopt them).
        `blockOwnerDeletion: true`: a foreground deletion of the Environment waits until
        its Jobs are gone, so no job is still running once the Environment is. Where the
        API server runs the OwnerReferencesPermissionEnforcement admission plugin, setting
        it needs `update` on `environments/finalizers` (granted in deploy/rbac.yaml; a user
        running `devjobs run` needs it too)."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def parse_ref(text: str, place: str = "--environment") -> tuple[str, str]:
    """`NS/NAME` -> (namespace, name)."""
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise DevjobsError(place, f"expected NAMESPACE/NAME, got {text!r}")
    return namespace, name


def parse_environment(document: Document, *, pins_only: bool = False) -> Environment:
    """Check and convert one Environment document (its kind already known).
    `pins_only`: the caller needs only the name and the sources' pins (a plan)."""
    try:
        return _read(document, pins_only)
    except InvalidField as error:
        raise document.invalid(error) from None


def _read(document: Document, pins_only: bool) -> Environment:
    environment = Fields(document.value, (), None)
    if environment.raw("apiVersion") != API_VERSION:
        raise InvalidField(
            ("apiVersion",),
            f"Environment must have apiVersion {API_VERSION}, "
            f"not {environment.raw('apiVersion') or 'none'!r}",
        )
    metadata = environment.mapping("metadata")
    spec = environment.mapping("spec")
    if pins_only and spec.raw("projectRef") is None:
        project = ""
    else:
        project = spec.mapping("projectRef").required_string("name")
    sources: list[EnvironmentSource] = []
    for index, raw in enumerate(spec.array("sources")):
        source = Fields(raw, (*spec.at("sources"), index), None)
        name = source.required_string("name")
        if any(known.name == name for known in sources):
            raise InvalidField(source.at("name"), f"duplicate source {name!r}")
        sources.append(
            EnvironmentSource(
                name=name,
                branch=source.string("branch") or None,
                commit_sha=source.string("commitSha") or None,
                pr_number=source.integer("prNumber", 0),
            )
        )

    def needed(fields: Fields, key: str) -> str:
        return (fields.string(key) or "") if pins_only else fields.required_string(key)

    return Environment(
        namespace=needed(metadata, "namespace"),
        name=metadata.required_string("name"),
        uid=metadata.string("uid") or "",
        project=project,
        type=needed(spec, "type"),
        generation=metadata.integer("generation", 0) or 0,
        deployment_mode=spec.string("deploymentMode") or None,
        sources=tuple(sources),
        labels=tuple(sorted((metadata.string_map("labels") or {}).items())),
        url=_status_url(environment),
        document=document,
    )


def _status_url(environment: Fields) -> str:
    """`status.url` when it is a string; the status is Catalyst's, so anything else there
    is not the reader's business."""
    status = environment.raw("status")
    url = status.get("url") if isinstance(status, Mapping) else None
    return url if isinstance(url, str) else ""


def from_object(value: Any) -> Environment:
    """An Environment as the API server returned it; places read `Environment ns/name: ...`."""
    if not isinstance(value, Mapping):
        raise DevjobsError("Environment", "not an object")
    if value.get("kind") != KIND:
        raise DevjobsError("Environment", f"expected kind {KIND}, got {value.get('kind')!r}")
    return parse_environment(object_document(value))


@overload
def load_file(path: Path) -> Environment: ...
@overload
def load_file(path: Path, *, required: bool) -> Environment | None: ...


def load_file(path: Path, *, required: bool = True) -> Environment | None:
    """The Environment in a YAML or JSON file, which may hold other documents too (the
    Project it belongs to, say): one `kind: Environment` is expected, or none when not
    `required` (then the result is None)."""
    found = [
        document
        for document in load_documents(path)
        if isinstance(document.value, dict) and document.value.get("kind") == KIND
    ]
    if not found and not required:
        return None
    if len(found) != 1:
        raise DevjobsError(str(path), f"expected one Environment, found {len(found)}")
    return parse_environment(found[0])
