"""The Project resource, as far as devjobs reads it, and finding it (and the
Environment, read by `devjobs.resolver.environment`) among files or API objects.

A Project is Catalyst's (`catalyst.catalyst.dev/v1alpha1`) plus, per source, `jobs`
and `devcontainer`; everything else in it is Catalyst's business and passes untouched.
It is untrusted input, read strictly (`devjobs.resolver.fields`, as the CRD's schema
says), and every error names `file:line:col: field.path`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devjobs.catalyst import API_VERSION
from devjobs.errors import DevjobsError
from devjobs.resolver.documents import Document, load_documents, object_document
from devjobs.resolver.environment import Environment, parse_environment
from devjobs.resolver.fields import FieldPath, Fields, InvalidField
from devjobs.resolver.jobspec import JobSpec
from devjobs.resolver.models import WIRE_CONFIG


@dataclass(frozen=True, kw_only=True)
class DevcontainerRef:
    """`spec.sources[i].devcontainer`: which config to read, or none at all."""

    __pydantic_config__ = WIRE_CONFIG

    path: str | None = None
    enabled: bool = True

    @classmethod
    def read(cls, value: object, path: FieldPath) -> DevcontainerRef:
        if value is None:
            return cls()
        fields = Fields(value, path, ("path", "enabled"))
        return cls(path=fields.string("path"), enabled=fields.flag("enabled", True))


@dataclass(frozen=True, kw_only=True)
class ProjectSource:
    """`spec.sources[i]`: Catalyst's three fields plus devjobs' two."""

    name: str
    repository_url: str
    branch: str
    jobs: list[JobSpec] = field(default_factory=list)
    devcontainer: DevcontainerRef = field(default_factory=DevcontainerRef)

    @classmethod
    def read(cls, value: object, path: FieldPath) -> ProjectSource:
        fields = Fields(value, path, ("name", "repositoryUrl", "branch", "jobs", "devcontainer"))
        return cls(
            name=fields.required_string("name"),
            repository_url=fields.required_string("repositoryUrl"),
            branch=fields.required_string("branch"),
            jobs=[
                JobSpec.read(job, (*fields.at("jobs"), index))
                for index, job in enumerate(fields.array("jobs"))
            ],
            devcontainer=DevcontainerRef.read(
                fields.raw("devcontainer"), fields.at("devcontainer")
            ),
        )


@dataclass(frozen=True)
class Project:
    name: str
    namespace: str | None
    sources: list[ProjectSource]
    document: Document


def parse_project(document: Document) -> Project:
    try:
        project = Fields(document.value, (), None)
        metadata = project.mapping("metadata")
        name = metadata.required_string("name")
        namespace = metadata.string("namespace") or None
        sources: list[ProjectSource] = []
        spec = project.mapping("spec")
        for index, raw in enumerate(spec.array("sources")):
            source = ProjectSource.read(raw, (*spec.at("sources"), index))
            if any(known.name == source.name for known in sources):
                raise InvalidField(
                    (*spec.at("sources"), index, "name"), f"duplicate source name {source.name!r}"
                )
            sources.append(source)
    except InvalidField as error:
        raise document.invalid(error) from None
    return Project(name, namespace, sources, document)


def _kind(document: Document) -> tuple[str, str]:
    value = document.value
    if not isinstance(value, dict):
        raise DevjobsError(document.where(""), "a resource must be an object")
    return str(value.get("apiVersion", "")), str(value.get("kind", ""))


@dataclass(frozen=True)
class Resources:
    project: Project | None
    environment: Environment | None


def read_resources(
    project_file: Path | None,
    environment_file: Path | None,
    *,
    project_object: Mapping[str, Any] | None = None,
    environment_object: Mapping[str, Any] | None = None,
) -> Resources:
    """The Project (and Environment) from the given files or API objects; other kinds
    in files are ignored.

    Exactly one Project may be in the project file; one Environment may come from
    either file (the explicit environment file wins over one in the project file).
    """
    if project_object is not None or (environment_object is not None and project_file is None):
        documents = [
            object_document(value)
            for value in (project_object, environment_object)
            if value is not None
        ]
        return Resources(*_pick(documents, "API objects"))
    project = None
    environment = None
    if project_file is not None:
        project, environment = _pick(load_documents(project_file), str(project_file))
        if project is None:
            raise DevjobsError(str(project_file), f"no {API_VERSION} Project in this file")
    if environment_object is not None:
        # `devjobs run PROJECT --environment NS/NAME`: the Project from the file, the
        # live Environment from the API (it wins over one in the file).
        return Resources(project, _pick([object_document(environment_object)], "API object")[1])
    if environment_file is not None:
        extra_project, environment = _pick(load_documents(environment_file), str(environment_file))
        if environment is None:
            raise DevjobsError(str(environment_file), f"no {API_VERSION} Environment in this file")
        if project is None:
            project = extra_project
    return Resources(project, environment)


def _pick(documents: list[Document], file: str) -> tuple[Project | None, Environment | None]:
    project: Project | None = None
    environment: Environment | None = None
    for document in documents:
        api_version, kind = _kind(document)
        if kind not in {"Project", "Environment"}:
            continue
        if api_version != API_VERSION:
            raise DevjobsError(
                document.where("/apiVersion"),
                f"{kind} must have apiVersion {API_VERSION}, not {api_version or 'none'!r}",
            )
        if kind == "Project":
            if project is not None:
                raise DevjobsError(document.place(""), "more than one Project in this file")
            project = parse_project(document)
        else:
            if environment is not None:
                raise DevjobsError(document.place(""), "more than one Environment in this file")
            environment = parse_environment(document, pins_only=True)
    return project, environment
