"""The reads `devjobs run`, `status` and `logs` make, with errors users can act on."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from devjobs import catalyst
from devjobs.errors import DevjobsError
from devjobs.kube.client import Kube, KubeError, collection_path, describe
from devjobs.kube.jobs import environment_label
from devjobs.kube.vocabulary import LABEL_ENVIRONMENT
from devjobs.resolver import environment as envmod


def read_environment(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    path = f"{collection_path(catalyst.API_VERSION, envmod.KIND, namespace)}/{quote(name)}"
    place = f"Environment {namespace}/{name}"
    try:
        obj = kube.get(path)
    except KubeError as error:
        raise DevjobsError(place, describe(error)) from None
    if obj is None:
        raise DevjobsError(place, f"not found (no such Environment in namespace {namespace!r})")
    return obj


def list_environment_objects(
    kube: Kube, environment: envmod.Environment, api_version: str, kind: str
) -> list[dict[str, Any]]:
    """The Environment's Jobs or pods (by `LABEL_ENVIRONMENT`) where its jobs run."""
    path = collection_path(api_version, kind, environment.jobs_namespace)
    selector = f"{LABEL_ENVIRONMENT}={environment_label(environment.name)}"
    try:
        items: list[dict[str, Any]] = kube.list(path, selector).get("items") or []
    except KubeError as error:
        where = f"{kind.lower()}s in namespace {environment.jobs_namespace}"
        raise DevjobsError(where, describe(error)) from None
    return items


def list_jobs(kube: Kube, environment: envmod.Environment) -> list[dict[str, Any]]:
    return list_environment_objects(kube, environment, "batch/v1", "Job")
