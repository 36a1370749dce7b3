"""`devjobs run` refusals on the real API server: each is one line
`devjobs: error: PLACE: MESSAGE`, exit 1, and nothing is created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devjobs.cli import main
from devjobs.kube.client import Kube
from tests.catalyst import GROUP, create_environment, write_devcontainer


@pytest.fixture
def setup(
    kube_api: Any, kube_client: Any, catalyst_crds: list[str], namespace: str, tmp_path: Path
) -> dict[str, Any]:
    kube = Kube(kube_client)
    create_environment(kube, "pr-3", namespace, sources={"web": "ab" * 20})
    source = tmp_path / "web"
    write_devcontainer(source, {"image": "devjobs.test/busybox:1", "tasks": {"test": "echo t"}})
    return {"kube": kube, "namespace": namespace, "source": source, "tmp": tmp_path}


def devjobs(setup: dict[str, Any], kubeconfig: Path, environment: str, *names: str) -> list[str]:
    return [
        "run", "--source", f"web={setup['source']}", "--environment", environment,
        "--kubeconfig", str(kubeconfig), "--workspace", "empty", *names,
    ]  # fmt: skip


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("devjobs: error: ")
    return lines[0]


def job_count(setup: dict[str, Any]) -> int:
    path = f"/apis/batch/v1/namespaces/{setup['namespace']}/jobs"
    return len(setup["kube"].list(path)["items"])


def limited_kubeconfig(setup: dict[str, Any], kube_api: Any) -> Path:
    """A kubeconfig of ServiceAccount `reader`, which may read Environments and Jobs but
    not create or patch Jobs."""
    kube, ns = setup["kube"], setup["namespace"]
    kube.request(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
    )
    read = ["get", "list", "watch"]
    kube.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        body={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "reader"},
            "rules": [
                {"apiGroups": [GROUP], "resources": ["environments"], "verbs": read},
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": read},
                {"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": read},
            ],
        },
    )  # fmt: skip
    kube.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        body={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    token = kube.request(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/reader/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )["status"]["token"]
    admin = json.loads(Path(kube_api.kubeconfig).read_text())
    cluster = admin["clusters"][0]["name"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "reader", "user": {"token": token}}],
        "contexts": [
            {
                "name": "reader",
                "context": {"cluster": cluster, "user": "reader"},
            }
        ],
        "current-context": "reader",
    }
    path = Path(setup["tmp"]) / "reader.kubeconfig"
    path.write_text(json.dumps(config))
    return path


def test_a_user_who_may_not_create_jobs_gets_one_rbac_error_and_nothing_is_created(
    setup: dict[str, Any], kube_api: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = limited_kubeconfig(setup, kube_api)
    code = main(devjobs(setup, kubeconfig, f"{setup['namespace']}/pr-3", "test"))
    line = one_line_error(capsys)
    assert code == 1
    assert "forbidden (RBAC)" in line and "system:serviceaccount:" in line, line
    assert line.startswith(f"devjobs: error: Job {setup['namespace']}/pr-3-web-test-")
    assert job_count(setup) == 0


@pytest.mark.parametrize(
    ("environment", "names", "expected"),
    [
        ("no-such-namespace/pr-3", ["test"],
         "devjobs: error: Environment no-such-namespace/pr-3: not found (no such Environment "
         "in namespace 'no-such-namespace')"),
        ("{ns}/pr-404", ["test"],
         "devjobs: error: Environment {ns}/pr-404: not found (no such Environment in "
         "namespace '{ns}')"),
        ("{ns}/pr-3", ["test", "nope"],
         "devjobs: error: nope: no such job in the plan (jobs: web/test)"),
    ],
    ids=["missing-namespace", "unknown-environment", "unknown-job"],
)  # fmt: skip
def test_a_missing_namespace_environment_or_job_is_a_one_line_error(
    setup: dict[str, Any],
    kube_api: Any,
    capsys: pytest.CaptureFixture[str],
    environment: str,
    names: list[str],
    expected: str,
) -> None:
    ns = setup["namespace"]
    code = main(devjobs(setup, kube_api.kubeconfig, environment.format(ns=ns), *names))
    assert code == 1
    assert one_line_error(capsys) == expected.format(ns=ns)
    assert job_count(setup) == 0
