"""Installing CustomResourceDefinitions and waiting until the API server serves them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def catalyst_dir() -> Path:
    """The Catalyst CRDs: `DEVJOBS_CATALYST_FIXTURES`, else `../shared/fixtures/catalyst`."""
    env = os.environ.get("DEVJOBS_CATALYST_FIXTURES")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "fixtures" / "catalyst"


def catalyst_crd_files() -> list[Path]:
    files = sorted(catalyst_dir().glob("*.yaml"))
    if not files:
        raise FileNotFoundError(
            f"no Catalyst CRDs in {catalyst_dir()} (set DEVJOBS_CATALYST_FIXTURES)"
        )
    return files


def project_crd_files() -> list[Path]:
    """The project's own CRDs (`schemas/crds/*.yaml`), possibly none yet."""
    return sorted((REPO_ROOT / "schemas" / "crds").glob("*.yaml"))


def install(api_client: Any, files: Iterable[Path], timeout: float = 60.0) -> list[str]:
    """Create (or replace) every CRD in `files`; return their names once all are Established."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext: Any = client.ApiextensionsV1Api(api_client)
    names: list[str] = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as e:
                if e.status != 409:
                    raise
                current = ext.read_custom_resource_definition(name)
                doc["metadata"]["resourceVersion"] = current.metadata.resource_version
                ext.replace_custom_resource_definition(name, doc)
            names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while not _established(ext.read_custom_resource_definition(name)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s")
            time.sleep(0.1)
    return names


def _established(crd: Any) -> bool:
    conds = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conds)
