"""A typed view of a Catalyst Environment, the object every run belongs to.

Built from the dict the API returns or a YAML/JSON file holds, checked once here so the
renderer and the run path never index into raw dicts. Errors name the CR field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devjobs.errors import DevjobsError

GROUP = "catalyst.catalyst.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
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
    def revision(self) -> str | None:
        """What to check out: the commit, else the branch (Catalyst treats "HEAD" as unset)."""
        if self.commit_sha and self.commit_sha != "HEAD":
            return self.commit_sha
        return self.branch or None


@dataclass(frozen=True)
class Environment:
    namespace: str
    name: str
    uid: str
    project: str
    type: str
    generation: int = 0
    deployment_mode: str | None = None
    sources: tuple[EnvironmentSource, ...] = field(default_factory=tuple)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

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


def _str(obj: Mapping[str, Any], key: str, place: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise DevjobsError(f"{place}.{key}", "is required")
        return None
    if not isinstance(value, str):
        raise DevjobsError(f"{place}.{key}", f"must be a string, got {type(value).__name__}")
    return value


def from_dict(obj: Any, place: str = "Environment") -> Environment:
    """Check and convert an Environment object (as the API returns it)."""
    if not isinstance(obj, Mapping):
        raise DevjobsError(place, "not an object")
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        raise DevjobsError(
            place,
            f"expected apiVersion {API_VERSION} kind {KIND}, "
            f"got {obj.get('apiVersion')!r} {obj.get('kind')!r}",
        )
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        raise DevjobsError(f"{place}.metadata", "is required")
    name = _str(metadata, "name", f"{place}.metadata")
    namespace = _str(metadata, "namespace", f"{place}.metadata")
    # A file written by hand has no uid; rendering then uses a stable placeholder
    # (server-side dry-run and real runs always read the live object).
    uid = _str(metadata, "uid", f"{place}.metadata", required=False) or ""
    generation = metadata.get("generation", 0)
    if not isinstance(generation, int):
        raise DevjobsError(f"{place}.metadata.generation", "must be an integer")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise DevjobsError(f"{place}.spec", "is required")
    project_ref = spec.get("projectRef")
    if not isinstance(project_ref, Mapping):
        raise DevjobsError(f"{place}.spec.projectRef", "is required")
    project = _str(project_ref, "name", f"{place}.spec.projectRef")
    env_type = _str(spec, "type", f"{place}.spec")
    mode = _str(spec, "deploymentMode", f"{place}.spec", required=False)
    raw_sources = spec.get("sources") or []
    if not isinstance(raw_sources, list):
        raise DevjobsError(f"{place}.spec.sources", "must be a list")
    sources: list[EnvironmentSource] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_sources):
        where = f"{place}.spec.sources[{index}]"
        if not isinstance(raw, Mapping):
            raise DevjobsError(where, "must be an object")
        source_name = _str(raw, "name", where)
        assert source_name is not None
        if source_name in seen:
            raise DevjobsError(f"{where}.name", f"duplicate source {source_name!r}")
        seen.add(source_name)
        pr = raw.get("prNumber")
        if pr is not None and not isinstance(pr, int):
            raise DevjobsError(f"{where}.prNumber", "must be an integer")
        sources.append(
            EnvironmentSource(
                name=source_name,
                branch=_str(raw, "branch", where, required=False),
                commit_sha=_str(raw, "commitSha", where, required=False),
                pr_number=pr,
            )
        )
    assert name is not None and namespace is not None and project is not None
    assert env_type is not None
    return Environment(
        namespace=namespace,
        name=name,
        uid=uid,
        project=project,
        type=env_type,
        generation=generation,
        deployment_mode=mode,
        sources=tuple(sources),
    )


def load_file(path: Path) -> Environment:
    """The Environment in a YAML or JSON file, which may hold other documents too (the
    Project it belongs to, say): exactly one `kind: Environment` is expected."""
    from devjobs.resolver.documents import load_documents

    found = [
        document
        for document in load_documents(path)
        if isinstance(document.value, dict) and document.value.get("kind") == "Environment"
    ]
    if len(found) != 1:
        raise DevjobsError(str(path), f"expected one Environment, found {len(found)}")
    return from_dict(found[0].value, place=f"{found[0].place('')}: Environment")
