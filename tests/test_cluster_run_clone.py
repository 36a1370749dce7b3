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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devjobs.cli import main
from devjobs.kube.client import Kube
from tests.catalyst import create_environment, project, write_devcontainer, write_project
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
    write_devcontainer(repo.path, devcontainer(image))
    repo.write("version.txt", "pinned-A\n")
    pinned = repo.commit("pinned")
    repo.write("version.txt", "tip-B\n")
    tip = repo.commit("tip")
    return repo, pinned, tip


@dataclass
class PinnedSource:
    """Repository `web` (pinned commit, then a newer tip), served at a pod-reachable URL
    that the Project names; Environment pr-7 pins `web` at `pinned`."""

    repo: WorkRepo
    pinned: str
    tip: str
    project: Path
    namespace: str
    kubeconfig: Path
    git_image: str

    def devjobs_run(self, *argv: str) -> list[str]:
        """`devjobs run` argv: the plan's devcontainer.json from the work tree, the jobs
        cloning the Project's repositoryUrl."""
        return [
            "run",
            str(self.project),
            "--source",
            f"web={self.repo.path}",
            "--environment",
            f"{self.namespace}/pr-7",
            "--kubeconfig",
            str(self.kubeconfig),
            *argv,
        ]


@pytest.fixture
def pinned_source(
    kube_api: Any,
    kube_client: Any,
    catalyst_crds: list[str],
    namespace: str,
    tmp_path: Path,
    kube_node: Any,
    git_image_ref: str,
    git_repos: RepoRoot,
) -> Callable[[str], PinnedSource]:
    """`pinned_source(url)`: make the repository, the Environment and the Project file."""

    def make(url: str) -> PinnedSource:
        repo, pinned, tip = make_repo(git_repos, kube_node.test_image)
        create_environment(Kube(kube_client), "pr-7", namespace, sources={"web": pinned})
        project_file = write_project(tmp_path / "project.yaml", project({"web": url}))
        return PinnedSource(
            repo, pinned, tip, project_file, namespace, Path(kube_api.kubeconfig), git_image_ref
        )

    return make


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


def test_the_clone_checks_out_the_pinned_commit_then_setup_and_job_run_in_it(
    kube_client: Any,
    daemon_on_node: tuple[GitDaemon, str],
    pinned_source: Callable[[str], PinnedSource],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = daemon_on_node
    source = pinned_source(url)
    pinned, tip = source.pinned, source.tip
    code = main(source.devjobs_run("--trigger", "PostDeploy", "--git-image", source.git_image))
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out + captured.err
    assert f"[show/devjobs-clone] devjobs: checked out {pinned}" in out
    assert tip not in out
    assert "[show/devjobs-setup-post-create] setup in checkout" in out
    assert "[show] job sees pinned-A after pinned-A" in out
    assert "web/show  Succeeded" in out
    job = Kube(kube_client).list(f"/apis/batch/v1/namespaces/{source.namespace}/jobs")["items"][0]
    assert job["metadata"]["annotations"]["devjobs.dev/commit"] == pinned


def test_clone_credentials_come_from_the_secret_named_by_git_secret(
    kube_client: Any,
    http_on_node: tuple[GitHttpServer, str],
    pinned_source: Callable[[str], PinnedSource],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, url = http_on_node
    source = pinned_source(url)
    kube, namespace = Kube(kube_client), source.namespace
    base = ["--trigger", "PostDeploy", "--git-image", source.git_image, "--no-logs"]

    # Without the Secret the server refuses the clone: the job fails in devjobs-clone.
    assert main(source.devjobs_run(*base)) == 1
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
    code = main(source.devjobs_run(*base, "--git-secret", "git-cred"))
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
