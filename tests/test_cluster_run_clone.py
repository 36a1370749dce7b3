"""`devjobs run` with the default `--workspace clone` on the real node: the clone init
container (image `devjobs.test/git:1`, the host's git) fetches the source from a real git
server that pods reach through the node's address, at the Environment's pinned commit,
then setup steps and the job run in that checkout.

The git servers listen on this machine's loopback; `NodePortForward` (see
tests/cluster/nodenet.py) makes each reachable at one URL on the node's address, from pods
and from this machine. The plan's devcontainer.json is read from the work tree with
`--source web=DIR`: as documented, cluster jobs still clone the Project's repositoryUrl
(that URL) at the Environment's commit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devjobs.cli import main
from devjobs.runner.kubeapi import Kube
from tests.cluster import git_image
from tests.cluster.nodenet import NodePortForward
from tests.gitserver import GIT_HTTP_TOKEN, GitDaemon, GitHttpServer, RepoRoot, WorkRepo

pytestmark = pytest.mark.tier2


@pytest.fixture(scope="session")
def git_image_ref(kube_node: Any) -> str:
    if getattr(kube_node, "holder", None) is None:
        pytest.fail("the clone tests need the tier-2 node started by the test run")
    return git_image.import_into(kube_node)


def devcontainer(image: str) -> dict[str, Any]:
    return {
        "image": image,
        "workspaceFolder": "/workspaces/web",
        "postCreateCommand": "cat version.txt > seen-by-setup.txt && echo setup in checkout",
        "tasks": {"show": "echo job sees $(cat version.txt) after $(cat seen-by-setup.txt)"},
        "customizations": {"devjobs": {"triggers": {"show": "PostDeploy"}}},
    }


def make_repo(git_repos: RepoRoot, image: str) -> tuple[WorkRepo, str, str]:
    """`web` with two commits: the pinned one (version pinned-A), then the tip (tip-B)."""
    repo = git_repos.create("web")
    repo.write(".devcontainer/devcontainer.json", json.dumps(devcontainer(image)))
    repo.write("version.txt", "pinned-A\n")
    pinned = repo.commit("pinned")
    repo.write("version.txt", "tip-B\n")
    tip = repo.commit("tip")
    return repo, pinned, tip


def setup_environment(kube: Kube, namespace: str, tmp_path: Path, url: str, sha: str) -> Path:
    kube.request(
        "POST",
        f"/apis/catalyst.catalyst.dev/v1alpha1/namespaces/{namespace}/environments",
        body={
            "apiVersion": "catalyst.catalyst.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": "pr-7", "namespace": namespace},
            "spec": {
                "projectRef": {"name": "shop"},
                "type": "development",
                "sources": [{"name": "web", "branch": "main", "commitSha": sha}],
            },
        },
    )
    project = tmp_path / "project.yaml"
    project.write_text(
        json.dumps(
            {
                "apiVersion": "catalyst.catalyst.dev/v1alpha1",
                "kind": "Project",
                "metadata": {"name": "shop"},
                "spec": {"sources": [{"name": "web", "repositoryUrl": url, "branch": "main"}]},
            }
        )
    )
    return project


@pytest.fixture
def daemon_on_node(git_repos: RepoRoot, kube_node: Any) -> Iterator[tuple[GitDaemon, str]]:
    daemon = GitDaemon(git_repos.path)
    forward = NodePortForward(kube_node, daemon.port)
    yield daemon, forward.url("git", "web")
    forward.stop()
    daemon.stop()


@pytest.fixture
def http_on_node(git_repos: RepoRoot, kube_node: Any) -> Iterator[tuple[GitHttpServer, str]]:
    server = GitHttpServer(git_repos.path)
    forward = NodePortForward(kube_node, server.port)
    yield server, forward.url("http", "web")
    forward.stop()
    server.stop()


def devjobs_run(
    kube_api: Any, project: Path, namespace: str, repo: WorkRepo, *argv: str
) -> list[str]:
    return [
        "run",
        str(project),
        "--source",
        f"web={repo.path}",
        "--environment",
        f"{namespace}/pr-7",
        "--kubeconfig",
        str(kube_api.kubeconfig),
        *argv,
    ]


def test_the_clone_checks_out_the_pinned_commit_then_setup_and_job_run_in_it(
    kube_api: Any,
    kube_client: Any,
    catalyst_crds: list[str],
    namespace: str,
    tmp_path: Path,
    kube_node: Any,
    git_image_ref: str,
    git_repos: RepoRoot,
    daemon_on_node: tuple[GitDaemon, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = daemon_on_node
    repo, pinned, tip = make_repo(git_repos, kube_node.test_image)
    project = setup_environment(Kube(kube_client), namespace, tmp_path, url, pinned)
    code = main(
        devjobs_run(kube_api, project, namespace, repo, "--trigger", "PostDeploy",
                    "--git-image", git_image_ref)
    )  # fmt: skip
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out + captured.err
    assert f"[show/devjobs-clone] devjobs: checked out {pinned}" in out
    assert tip not in out
    assert "[show/devjobs-setup-post-create] setup in checkout" in out
    assert "[show] job sees pinned-A after pinned-A" in out
    assert "web/show  Succeeded" in out
    job = Kube(kube_client).list(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"][0]
    assert job["metadata"]["annotations"]["devjobs.dev/commit"] == pinned


def test_clone_credentials_come_from_the_secret_named_by_git_secret(
    kube_api: Any,
    kube_client: Any,
    catalyst_crds: list[str],
    namespace: str,
    tmp_path: Path,
    kube_node: Any,
    git_image_ref: str,
    git_repos: RepoRoot,
    http_on_node: tuple[GitHttpServer, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, url = http_on_node
    repo, pinned, _ = make_repo(git_repos, kube_node.test_image)
    kube = Kube(kube_client)
    project = setup_environment(kube, namespace, tmp_path, url, pinned)
    base = ["--trigger", "PostDeploy", "--git-image", git_image_ref, "--no-logs"]

    # Without the Secret the server refuses the clone: the job fails in devjobs-clone.
    assert main(devjobs_run(kube_api, project, namespace, repo, *base)) == 1
    out = capsys.readouterr().out
    assert "devjobs-clone exited with code 128" in out and "web/show  Failed" in out

    kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        body={
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "git-cred"},
            "stringData": {"password": GIT_HTTP_TOKEN},
        },
    )
    server.requests.clear()
    code = main(devjobs_run(kube_api, project, namespace, repo, *base, "--git-secret", "git-cred"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "web/show  Succeeded" in out
    # The pod's fetch was refused anonymously, then authenticated with the Secret's token.
    statuses = [(r.status, r.authorization is not None) for r in server.requests]
    assert (401, False) in statuses and (200, True) in statuses
    job = [
        j
        for j in kube.list(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"]
        if j["status"].get("succeeded")
    ][0]
    clone = job["spec"]["template"]["spec"]["initContainers"][0]
    assert GIT_HTTP_TOKEN not in json.dumps(job)  # only a secretKeyRef in the Job
    assert {"name": "git-cred", "key": "password", "optional": False} in [
        e.get("valueFrom", {}).get("secretKeyRef") for e in clone["env"]
    ]
