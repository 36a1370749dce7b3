"""Catalyst objects for the tests and benches: Environments, Projects, devcontainer files.

Catalyst (``catalyst.catalyst.dev/v1alpha1``) owns the `Environment` and `Project`
custom resources; the tests play Catalyst. Each builder returns a plain dict the API
server accepts, with the defaults the tests share (Project ``shop``, type
``development``, branch ``main``); anything else is a keyword::

    create_environment(kube, "pr-1", namespace, sources={"web": SHA})
    project_file = write_project(tmp_path / "project.yaml", project({"web": url}))
    write_devcontainer(tmp_path / "web", {"image": image, "tasks": {"test": "echo t"}})
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devjobs.runner.kubeapi import Kube

GROUP = "catalyst.catalyst.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PROJECT = "shop"
BRANCH = "main"
DEVCONTAINER = ".devcontainer/devcontainer.json"


def environments_path(namespace: str, name: str = "") -> str:
    """The REST path of a namespace's Environments, or of one of them."""
    path = f"/apis/{API_VERSION}/namespaces/{namespace}/environments"
    return f"{path}/{name}" if name else path


def environment(
    name: str,
    namespace: str,
    sources: Mapping[str, str] | None = None,
    project: str = PROJECT,
    type_: str = "development",
    branch: str = BRANCH,
) -> dict[str, Any]:
    """An Environment of `project`; `sources` maps each source's name to its pinned
    commit (``spec.sources[].commitSha``, all on `branch`); None: no ``spec.sources``."""
    spec: dict[str, Any] = {"projectRef": {"name": project}, "type": type_}
    if sources is not None:
        spec["sources"] = [
            {"name": source, "branch": branch, "commitSha": sha} for source, sha in sources.items()
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": "Environment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def create_environment(
    kube: Kube, name: str, namespace: str, sources: Mapping[str, str], **fields: Any
) -> dict[str, Any]:
    """POST `environment(name, namespace, sources, **fields)`; returns what the API
    server stored."""
    created: dict[str, Any] = kube.request(
        "POST",
        environments_path(namespace),
        body=environment(name, namespace, sources, **fields),
    )
    return created


def environment_conditions(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """The Environment's ``status.conditions`` by type (empty before any is written)."""
    obj = kube.get(environments_path(namespace, name)) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def project(
    sources: Mapping[str, str],
    name: str = PROJECT,
    namespace: str | None = None,
    jobs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    branch: str = BRANCH,
) -> dict[str, Any]:
    """A Project; `sources` maps each source's name to its ``repositoryUrl``, `jobs` (by
    source name) gives sources their ``jobs``."""
    entries: list[dict[str, Any]] = []
    for source, url in sources.items():
        entry: dict[str, Any] = {"name": source, "repositoryUrl": url, "branch": branch}
        if jobs and source in jobs:
            entry["jobs"] = [dict(job) for job in jobs[source]]
        entries.append(entry)
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "Project",
        "metadata": metadata,
        "spec": {"sources": entries},
    }


def write_project(path: Path, obj: Mapping[str, Any]) -> Path:
    """Write a Project (JSON, which is YAML too) to `path`, for ``devjobs run PROJECT``."""
    path.write_text(json.dumps(obj))
    return path


def write_devcontainer(source: Path, config: Mapping[str, Any]) -> Path:
    """Write `config` as ``SOURCE/.devcontainer/devcontainer.json``; returns that file."""
    path = source / DEVCONTAINER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path
