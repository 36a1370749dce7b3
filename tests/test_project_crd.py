"""The jobs-aware Project CRD in schemas/ against the real API server: it is accepted,
keeps devjobs' fields that Catalyst's CRD would prune, and the server itself rejects
what the models reject. What the server returns plans like the file it came from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import crds

GROUP, VERSION, PLURAL = "catalyst.catalyst.dev", "v1alpha1", "projects"


def project(name: str, jobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {
        "name": "app",
        "repositoryUrl": "https://git.example/acme/app.git",
        "branch": "main",
    }
    if jobs is not None:
        source["jobs"] = jobs
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Project",
        "metadata": {"name": name},
        "spec": {"sources": [source]},
    }


@pytest.fixture
def jobs_aware_crd(kube_client: Any) -> None:
    # Installed per test: Catalyst's narrower CRD has the same name and may have been
    # installed by another test since.
    crds.install(kube_client, crds.project_crd_files())


def create(kube_client: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    from kubernetes import client

    # Any: the generated client's models are not what the tests pass (plain dicts).
    api: Any = client.CustomObjectsApi(kube_client)
    created: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
    )
    return created


def test_jobs_and_devcontainer_fields_survive_the_api_server(
    kube_client: Any, namespace: str, jobs_aware_crd: None
) -> None:
    jobs: list[dict[str, Any]] = [
        {"name": "test", "trigger": "PostDeploy", "timeoutSeconds": 600, "retries": 1},
        {
            "name": "migrate",
            "trigger": "PreDeploy",
            "runAs": "InitContainer",
            "command": ["rake", "db:migrate"],
            "env": {"RAILS_ENV": "test"},
            "image": None,
        },
        {"name": "lint", "enabled": False},
    ]
    body = project("shop", jobs)
    body["spec"]["sources"][0]["devcontainer"] = {"path": ".devcontainer/ci/devcontainer.json"}
    stored = create(kube_client, namespace, body)
    source = stored["spec"]["sources"][0]
    assert source["jobs"][0] == jobs[0]
    assert source["jobs"][1]["command"] == ["rake", "db:migrate"]
    assert source["jobs"][1]["runAs"] == "InitContainer"
    assert source["devcontainer"] == {"path": ".devcontainer/ci/devcontainer.json"}


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"name": "t", "trigger": "Sometimes"}, "trigger"),
        ({"name": "t", "runAs": "Sidecar"}, "runAs"),
        ({"name": "t", "retries": -1}, "retries"),
        ({"name": "t", "timeoutSeconds": 0}, "timeoutSeconds"),
        ({"trigger": "Manual"}, "name"),
        ({"name": "t", "comand": ["x"]}, "comand"),
    ],
)
def test_the_server_rejects_what_the_models_reject(
    kube_client: Any, namespace: str, jobs_aware_crd: None, job: dict[str, Any], field: str
) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as error:
        create(kube_client, namespace, project("bad", [job]))
    assert error.value.status == 422 or (error.value.status == 400 and field == "comand")
    assert error.value.body is not None
    assert field in json.loads(error.value.body)["message"]


def test_a_project_read_back_from_the_server_plans_like_the_file(
    kube_client: Any, namespace: str, jobs_aware_crd: None, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    (app / ".devcontainer").mkdir(parents=True)
    (app / ".devcontainer" / "devcontainer.json").write_text(
        '{"image": "alpine:3", "postCreateCommand": "make deps", "tasks": {"test": "make test"}}'
    )
    body = project("shop", [{"name": "test", "trigger": "PostDeploy"}])
    stored = create(kube_client, namespace, body)
    from_server = tmp_path / "from-server.yaml"
    from_server.write_text(yaml.safe_dump(stored))
    from_file = tmp_path / "project.yaml"
    from_file.write_text(yaml.safe_dump(body))

    def plan(path: Path) -> dict[str, Any]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "devjobs",
                "plan",
                str(path),
                "--source",
                f"app={app}",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        document: dict[str, Any] = json.loads(result.stdout)
        for job in document["jobs"]:
            job["origins"] = [{**o, "file": "-"} for o in job["origins"]]
        return document

    assert plan(from_server) == plan(from_file)
