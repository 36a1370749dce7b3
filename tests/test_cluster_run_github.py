"""`devjobs run` posts GitHub commit statuses for its jobs, end to end on the real node,
against tests/fake_github.py (a fake of GitHub's documented commit-status endpoint, the
one fake in the suite: it checks every request and records contract violations).

The source's repositoryUrl is `https://github.com/org/app.git` (what maps it to a GitHub
repository); pods cannot reach github.com, so these runs use `--workspace empty` and read
the devcontainer from a local directory (`--source`): cloning is pinned by
test_cluster_run_clone.py, this file pins the statuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devjobs.cli import main
from devjobs.kube.client import Kube
from tests.catalyst import create_environment, project, write_devcontainer, write_project
from tests.fake_github import fake_github

SHA = "89abcdef0123456789abcdef0123456789abcdef"
TOKEN = "ghs-fake-token-7d1c"


@pytest.fixture
def setup(
    kube_api: Any, kube_client: Any, catalyst_crds: list[str], namespace: str, tmp_path: Path,
    kube_node: Any,
) -> list[str]:  # fmt: skip
    create_environment(Kube(kube_client), "pr-9", namespace, sources={"app": SHA})
    source = tmp_path / "app"
    config = {
        "image": kube_node.test_image,
        "tasks": {"pass": "echo fine", "fail": "echo broken; exit 2"},
    }
    write_devcontainer(source, config)
    project_file = write_project(
        tmp_path / "project.yaml", project({"app": "https://github.com/org/app.git"})
    )
    return [
        "run", str(project_file), "--source", f"app={source}", "--environment", f"{namespace}/pr-9",
        "--kubeconfig", str(kube_api.kubeconfig), "--workspace", "empty", "--no-logs",
    ]  # fmt: skip


@pytest.mark.tier2
def test_each_job_gets_pending_when_created_then_its_result(
    setup: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "not-this-one")  # DEVJOBS_GITHUB_TOKEN wins
    monkeypatch.setenv("DEVJOBS_GITHUB_TOKEN", TOKEN)
    with fake_github(TOKEN) as fake:
        template = "https://ci.example/{repo}/commit/{sha}/{source}/{job}"
        code = main(
            [*setup, "--github-api-url", fake.url, "--target-url", template, "pass", "fail"]
        )
    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err  # `fail` failed
    assert "warning" not in captured.err
    assert fake.violations == []
    seen = [(s["context"], s["state"]) for s in fake.statuses]
    for job, final in (("pass", "success"), ("fail", "failure")):
        mine = [state for context, state in seen if context == f"devjobs/app/{job}"]
        assert mine == ["pending", final], seen
    assert {(s["repo"], s["sha"]) for s in fake.statuses} == {("org/app", SHA)}
    by_state = {(s["context"], s["state"]): s for s in fake.statuses}
    failed = by_state[("devjobs/app/fail", "failure")]
    assert failed["description"] == "Failed: container fail exited with code 2"
    assert failed["target_url"] == f"https://ci.example/org/app/commit/{SHA}/app/fail"
    assert by_state[("devjobs/app/pass", "pending")]["description"] == "Pending: job created"


@pytest.mark.tier2
def test_a_github_refusal_is_a_warning_and_not_a_job_failure(
    setup: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEVJOBS_GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", "a-revoked-token")
    with fake_github(TOKEN) as fake:
        code = main([*setup, "--github-api-url", fake.url, "pass"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "app/pass  Succeeded" in captured.out
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    # Said once per job, with GitHub's answer and the hint, never the token.
    assert len(warnings) == 1 and "401 Bad credentials" in warnings[0], captured.err
    assert "a-revoked-token" not in captured.err
    assert len(fake.requests) == 2  # pending, then success: each refused, neither retried


def test_an_unknown_target_url_field_is_a_one_line_error_before_anything_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEVJOBS_GITHUB_TOKEN", TOKEN)
    missing = tmp_path / "no-such-kubeconfig"
    code = main(
        ["run", "p.yaml", "--environment", "ns/env", "--kubeconfig", str(missing),
         "--target-url", "https://ci.example/{build}", "test"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("devjobs: error: github target URL template: unknown field(s) ['build']")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.tier2
def test_an_init_container_job_gets_pending_then_its_result_at_predeploy(
    kube_api: Any, kube_client: Any, catalyst_crds: list[str], namespace: str, tmp_path: Path,
    kube_node: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`runAs: InitContainer` jobs report like Jobs: pending when the workload patch is
    applied, then the init container's result."""
    from tests.test_cluster_run_workload import deployment

    kube = Kube(kube_client)
    kube.apply(deployment(namespace, image=kube_node.test_image), field_manager="catalyst")
    create_environment(kube, "pr-10", namespace, sources={"app": SHA})
    source = tmp_path / "app"
    write_devcontainer(source, {"image": kube_node.test_image})
    migrate = {
        "name": "migrate",
        "trigger": "PreDeploy",
        "runAs": "InitContainer",
        "image": kube_node.test_image,
        "command": ["sh", "-c", "echo migrated"],
    }
    project_file = write_project(
        tmp_path / "project.yaml",
        project({"app": "https://github.com/org/app.git"}, jobs={"app": [migrate]}),
    )
    monkeypatch.setenv("DEVJOBS_GITHUB_TOKEN", TOKEN)
    with fake_github(TOKEN) as fake:
        code = main(
            ["run", str(project_file), "--source", f"app={source}",
             "--environment", f"{namespace}/pr-10", "--kubeconfig", str(kube_api.kubeconfig),
             "--workspace", "empty", "--no-logs", "--trigger", "PreDeploy",
             "--github-api-url", fake.url]
        )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert fake.violations == []
    states = [s["state"] for s in fake.statuses if s["context"] == "devjobs/app/migrate"]
    assert states == ["pending", "success"], fake.statuses


APP_ID = 31337
INSTALLATION = 4242


@pytest.mark.tier2
def test_with_a_github_app_each_job_is_a_check_run_and_no_status_is_posted(
    kube_api: Any, kube_client: Any, catalyst_crds: list[str], namespace: str, tmp_path: Path,
    kube_node: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The controller's App variables and the Project's githubInstallationId: check runs
    `queued`, `in_progress`, `completed` instead of commit statuses (a token is set too:
    the App wins), the failing one's text carrying the log tail the run kept."""
    create_environment(Kube(kube_client), "pr-11", namespace, sources={"app": SHA})
    source = tmp_path / "app"
    config = {
        "image": kube_node.test_image,
        "tasks": {"pass": "sleep 3; echo fine", "fail": "sleep 3; echo broken-7f3a; exit 2"},
    }
    write_devcontainer(source, config)
    body = project({"app": "https://github.com/org/app.git"})
    body["spec"]["githubInstallationId"] = str(INSTALLATION)
    project_file = write_project(tmp_path / "project.yaml", body)
    with fake_github(TOKEN, app_id=APP_ID, installations={INSTALLATION: {"org/app"}}) as fake:
        key = tmp_path / "private-key.pem"
        key.write_bytes(fake.app_private_key_pem)
        monkeypatch.setenv("DEVJOBS_GITHUB_APP_ID", str(APP_ID))
        monkeypatch.setenv("DEVJOBS_GITHUB_APP_KEY_FILE", str(key))
        monkeypatch.setenv("DEVJOBS_GITHUB_TOKEN", TOKEN)
        template = "https://ci.example/{repo}/commit/{sha}/{source}/{job}"
        code = main(
            ["run", str(project_file), "--source", f"app={source}",
             "--environment", f"{namespace}/pr-11", "--kubeconfig", str(kube_api.kubeconfig),
             "--workspace", "empty", "--no-logs", "--github-api-url", fake.url,
             "--target-url", template, "pass", "fail"]
        )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err  # `fail` failed
    assert "warning" not in captured.err, captured.err
    assert fake.violations == []
    assert fake.statuses == []
    assert fake.issued == [INSTALLATION]  # one installation token, cached for the run
    runs = {r["name"]: r for r in fake.check_runs.values()}
    assert sorted(runs) == ["devjobs/app/fail", "devjobs/app/pass"]
    for job, conclusion in (("pass", "success"), ("fail", "failure")):
        run = runs[f"devjobs/app/{job}"]
        sent = [r["body"].get("status") for r in fake.check_run_requests if r["id"] == run["id"]]
        assert sent == ["queued", "in_progress", "completed"], fake.check_run_requests
        assert (run["repo"], run["head_sha"], run["conclusion"]) == ("org/app", SHA, conclusion)
        assert run["details_url"] == f"https://ci.example/org/app/commit/{SHA}/app/{job}"
    failed = runs["devjobs/app/fail"]
    assert "exit code 2" in failed["output"]["title"]
    assert "broken-7f3a" in failed["output"]["text"]  # the log tail the run kept
    assert "fine" in runs["devjobs/app/pass"]["output"]["text"]
