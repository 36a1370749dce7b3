"""`devjobs plan` end to end: the real command, real files, real git servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.gitserver import GitDaemon, RepoRoot

DEVCONTAINER = """\
// The app's development container.
{
  "image": "node:22",
  "workspaceFolder": "/src/${localWorkspaceFolderBasename}",
  "onCreateCommand": "npm ci",
  "postCreateCommand": {"db": "rake db:setup", "assets": ["npm", "run", "build"]},
  "postAttachCommand": "echo attached",
  "containerEnv": {"CI": "true", "HOME_DIR": "${localEnv:HOME:/root}"},
  "tasks": {
    "test": "npm test",
    "lint": ["npm", "run", "lint"],
  },
  "customizations": {"devjobs": {"triggers": {"test": "PostDeploy"}}},
}
"""


def devjobs(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devjobs", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / ".devcontainer").mkdir(parents=True)
    (root / ".devcontainer" / "devcontainer.json").write_text(DEVCONTAINER)
    return root


def project(
    tmp_path: Path, url: str, jobs: list[dict[str, object]] | None = None, **extra: object
) -> Path:
    source: dict[str, object] = {"name": "app", "repositoryUrl": url, "branch": "main", **extra}
    if jobs is not None:
        source["jobs"] = jobs
    document = {
        "apiVersion": "catalyst.catalyst.dev/v1alpha1",
        "kind": "Project",
        "metadata": {"name": "shop"},
        "spec": {"sources": [source]},
    }
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_plan_of_a_local_directory_lists_setup_jobs_then_tasks(app: Path) -> None:
    result = devjobs("plan", "--source", f"app={app}", "-o", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["apiVersion"] == "devjobs.dev/v1alpha1" and plan["kind"] == "JobPlan"
    names = [(job["name"], job["trigger"], job["runAs"]) for job in plan["jobs"]]
    assert names == [
        ("on-create", "PreDeploy", "InitContainer"),
        ("post-create", "PreDeploy", "InitContainer"),
        ("test", "PostDeploy", "Job"),
        ("lint", "Manual", "Job"),
    ]
    post_create = plan["jobs"][1]
    assert post_create["parallel"] == {
        "db": ["/bin/sh", "-c", "rake db:setup"],
        "assets": ["npm", "run", "build"],
    }
    assert "command" not in post_create
    test = plan["jobs"][2]
    assert test["command"] == ["/bin/sh", "-c", "npm test"]
    assert test["setup"] == ["on-create", "post-create"]
    assert test["workingDir"] == "/src/app"
    assert test["origins"] == [
        {
            "kind": "devcontainer",
            "file": ".devcontainer/devcontainer.json",
            "pointer": "/tasks/test",
        }
    ]
    assert plan["skipped"][0]["pointer"] == "/postAttachCommand"


def test_cluster_target_never_reads_the_callers_environment(app: Path) -> None:
    result = devjobs("plan", "--source", f"app={app}", "-o", "json", env={"HOME": "/secret/home"})
    plan = json.loads(result.stdout)
    assert plan["jobs"][0]["env"]["HOME_DIR"] == "/root"
    assert "/secret/home" not in result.stdout + result.stderr
    assert any("localEnv" in warning for warning in plan["warnings"])
    local = json.loads(
        devjobs(
            "plan",
            "--target",
            "local",
            "--source",
            f"app={app}",
            "-o",
            "json",
            env={"HOME": "/secret/home"},
        ).stdout
    )
    assert local["jobs"][0]["env"]["HOME_DIR"] == "/secret/home"


def test_table_output_shows_origins_skipped_items_and_warnings(app: Path) -> None:
    result = devjobs("plan", "--source", f"app={app}")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "SOURCE",
        "JOB",
        "TRIGGER",
        "RUNS",
        "AS",
        "IMAGE",
        "COMMAND",
        "ORIGIN",
    ]
    assert any(line.split()[:3] == ["app", "test", "PostDeploy"] for line in lines)
    assert ".devcontainer/devcontainer.json#/tasks/test" in result.stdout
    assert "Skipped:" in result.stdout and "Warnings:" in result.stdout


def test_yaml_output_is_the_same_document_as_json(app: Path) -> None:
    as_json = json.loads(devjobs("plan", "--source", f"app={app}", "-o", "json").stdout)
    as_yaml = yaml.safe_load(devjobs("plan", "--source", f"app={app}", "-o", "yaml").stdout)
    assert as_json == as_yaml


def test_invalid_input_prints_one_line_on_stderr_nothing_on_stdout_exit_1(
    app: Path, tmp_path: Path
) -> None:
    (app / ".devcontainer" / "devcontainer.json").write_text('{\n  "tasks": {"a": "x",,}\n}\n')
    result = devjobs("plan", "--source", f"app={app}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(
        "devjobs: error: .devcontainer/devcontainer.json:2:"
    ) or result.stderr.startswith(f"devjobs: error: {app}"), result.stderr


def test_usage_errors_exit_2(app: Path) -> None:
    assert devjobs("plan", "--source", "no-equals-sign").returncode == 2
    assert devjobs("plan", "--source", f"app={app}", "--source", f"app={app}").returncode == 2
    assert devjobs("plan", "-o", "xml").returncode == 2


def test_nothing_to_plan_is_an_error() -> None:
    result = devjobs("plan")
    assert result.returncode == 1 and "nothing to plan" in result.stderr


def test_help_explains_every_option() -> None:
    text = devjobs("plan", "--help").stdout
    for option in ("PROJECT", "--environment", "--source", "--config", "--target", "--output"):
        assert option in text


def test_project_jobs_override_devcontainer_jobs_from_a_local_directory(
    app: Path, tmp_path: Path
) -> None:
    path = project(
        tmp_path,
        "https://git.example/acme/app.git",
        jobs=[
            {"name": "test", "trigger": "PostBuild", "timeoutSeconds": 600},
            {"name": "lint", "enabled": False},
            {
                "name": "migrate",
                "command": ["rake", "db:migrate"],
                "trigger": "PreDeploy",
                "runAs": "InitContainer",
            },
        ],
    )
    result = devjobs("plan", str(path), "--source", f"app={app}", "-o", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    jobs = {job["name"]: job for job in plan["jobs"]}
    assert list(jobs) == ["on-create", "post-create", "test", "migrate"]
    assert jobs["test"]["trigger"] == "PostBuild" and jobs["test"]["timeoutSeconds"] == 600
    assert [o["kind"] for o in jobs["test"]["origins"]] == ["devcontainer", "project"]
    assert jobs["test"]["origins"][1] == {
        "kind": "project",
        "file": str(path),
        "pointer": "/spec/sources/0/jobs/0",
    }
    assert jobs["migrate"]["image"] is None
    assert plan["sources"][0]["repositoryUrl"] == "https://git.example/acme/app.git"


def test_an_environment_for_another_project_or_source_is_refused(app: Path, tmp_path: Path) -> None:
    path = project(tmp_path, "https://git.example/acme/app.git")
    env = tmp_path / "env.yaml"
    env.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "catalyst.catalyst.dev/v1alpha1",
                "kind": "Environment",
                "metadata": {"name": "pr-1"},
                "spec": {
                    "projectRef": {"name": "shop"},
                    "sources": [{"name": "api", "commitSha": "abc"}],
                },
            }
        )
    )
    result = devjobs("plan", str(path), "--environment", str(env), "--source", f"app={app}")
    assert result.returncode == 1
    assert f"{env}:" in result.stderr and "spec.sources[0].name: no source 'api'" in result.stderr


def test_config_for_an_unknown_source_is_an_error(app: Path) -> None:
    result = devjobs(
        "plan", "--source", f"app={app}", "--config", "web=.devcontainer/x/devcontainer.json"
    )
    assert result.returncode == 1 and "no source named 'web'" in result.stderr


# --- remote sources, fetched from real git servers on loopback ---------------------


def test_remote_project_is_planned_at_its_branch_and_pinned_commit(
    git_repos: RepoRoot, git_daemon: GitDaemon, tmp_path: Path
) -> None:
    repo = git_repos.create("app")
    repo.write(".devcontainer/devcontainer.json", DEVCONTAINER)
    first = repo.commit("first")
    repo.write(
        ".devcontainer/devcontainer.json", DEVCONTAINER.replace("npm test", "npm test -- --ci")
    )
    second = repo.commit("second")
    path = project(tmp_path, git_daemon.url("app"))
    cache = {"DEVJOBS_CACHE_DIR": str(tmp_path / "cache")}
    result = devjobs("plan", str(path), "-o", "json", env=cache)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["sources"][0]["commitSha"] == second
    assert plan["jobs"][2]["command"][-1] == "npm test -- --ci"
    assert plan["jobs"][2]["workingDir"] == "/src/app"

    env = tmp_path / "env.yaml"
    env.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "catalyst.catalyst.dev/v1alpha1",
                "kind": "Environment",
                "metadata": {"name": "pr-1"},
                "spec": {
                    "projectRef": {"name": "shop"},
                    "sources": [{"name": "app", "commitSha": first}],
                },
            }
        )
    )
    pinned = json.loads(
        devjobs("plan", str(path), "--environment", str(env), "-o", "json", env=cache).stdout
    )
    assert pinned["sources"][0]["commitSha"] == first
    assert pinned["jobs"][2]["command"][-1] == "npm test"


def test_file_urls_are_refused_inside_a_project_but_allowed_on_the_command_line(
    git_repos: RepoRoot, tmp_path: Path
) -> None:
    repo = git_repos.create("app")
    repo.write(".devcontainer/devcontainer.json", DEVCONTAINER)
    repo.commit("first")
    url = f"file://{repo.path}"
    path = project(tmp_path, url)
    refused = devjobs("plan", str(path))
    assert refused.returncode == 1
    assert f"{path}:" in refused.stderr and "repositoryUrl" in refused.stderr
    cache = {"DEVJOBS_CACHE_DIR": str(tmp_path / "cache")}
    allowed = devjobs("plan", "--source", f"app={url}", "-o", "json", env=cache)
    assert allowed.returncode == 0, allowed.stderr
    assert [job["name"] for job in json.loads(allowed.stdout)["jobs"]][:2] == [
        "on-create",
        "post-create",
    ]


@pytest.mark.parametrize(
    "url", ["ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/pwned", "fd::3"]
)
def test_hostile_repository_urls_in_a_project_are_refused_at_their_place(
    tmp_path: Path, url: str
) -> None:
    path = project(tmp_path, url)
    result = devjobs("plan", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert f"{path}:8:" in result.stderr and "spec.sources[0].repositoryUrl" in result.stderr
    assert not Path("/tmp/pwned").exists()
