"""`devjobs run` against the real cluster with a real node: real pods run real commands."""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from typing import Any

import pytest

from devjobs.cli.run import run_on_cluster
from devjobs.kube.client import Kube
from devjobs.kube.logstore import configmap_name
from tests import catalyst
from tests.catalyst import create_environment, project, write_devcontainer, write_project

pytestmark = pytest.mark.tier2

SHA = "0123456789abcdef0123456789abcdef01234567"


def parse(*argv: str) -> argparse.Namespace:
    """The real `devjobs run` parser."""
    from devjobs.cli import build_parser

    return build_parser().parse_args(["run", *argv])


def devcontainer(image: str) -> dict[str, Any]:
    return {
        "image": image,
        "workspaceFolder": "/workspaces/web",
        "postCreateCommand": "echo setup-ran > ready.txt && echo setup step done",
        "tasks": {
            "pass": "cat ready.txt && echo hello from pass",
            "fail": "echo about to fail; exit 3",
            "slow": "echo started slow; sleep 120",
            "lint": {"good": "echo good entry", "bad": "echo bad entry; exit 5"},
        },
        "customizations": {
            "devjobs": {
                "triggers": {
                    "pass": "PostDeploy",
                    "fail": "Manual",
                    "slow": "Manual",
                    "lint": "Manual",
                }
            }
        },
    }


@pytest.fixture
def env(
    kube_client: Any, catalyst_crds: list[str], namespace: str, tmp_path: Path, kube_node: Any
) -> dict[str, Any]:
    kube = Kube(kube_client)
    create_environment(kube, "pr-1", namespace, sources={"web": SHA})
    source = tmp_path / "web"
    write_devcontainer(source, devcontainer(kube_node.test_image))
    project_file = write_project(
        tmp_path / "project.yaml", project({"web": "https://git.example/shop/web.git"})
    )
    return {
        "kube": kube,
        "namespace": namespace,
        "source": source,
        "project": project_file,
        "ref": f"{namespace}/pr-1",
        "image": kube_node.test_image,
    }


def run(env: dict[str, Any], *argv: str) -> tuple[int, str]:
    """`devjobs run PROJECT --source .. --environment .. --workspace empty ARGV...`: JOB
    names in ARGV come after the options (intermixed parsing)."""
    out = io.StringIO()
    args = parse(
        str(env["project"]),
        "--source",
        f"web={env['source']}",
        "--environment",
        env["ref"],
        "--workspace",
        "empty",
        *argv,
    )
    code = run_on_cluster(args, kube=env["kube"], out=out)
    return code, out.getvalue()


def jobs(env: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = env["kube"].list(
        f"/apis/batch/v1/namespaces/{env['namespace']}/jobs"
    )["items"]
    return items


def environment_conditions(env: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return catalyst.environment_conditions(env["kube"], env["namespace"], "pr-1")


def test_a_passing_job_runs_setup_first_streams_prefixed_logs_and_exits_0(
    env: dict[str, Any],
) -> None:
    code, out = run(env, "--trigger", "PostDeploy")
    assert code == 0, out
    assert "[pass/devjobs-setup-post-create] setup step done" in out
    assert "[pass] setup-ran" in out  # the job saw what the setup step wrote
    assert "[pass] hello from pass" in out
    assert out.index("setup step done") < out.index("hello from pass")
    assert "web/pass  Succeeded" in out
    conditions = environment_conditions(env)
    assert conditions["Job.web.pass"]["status"] == "True"
    # The aggregate is the Environment's: its PreDeploy job (post-create, an init
    # container of the workload) has not run at this commit.
    aggregate = conditions["JobsSucceeded"]
    assert (aggregate["status"], aggregate["reason"]) == ("Unknown", "Pending"), aggregate
    assert aggregate["message"] == f"commit {SHA[:7]}: 1 of 2 jobs succeeded; 1 pending"


def test_running_one_manual_job_leaves_jobs_succeeded_false_after_a_failed_postbuild_job(
    env: dict[str, Any],
) -> None:
    config = devcontainer(str(env["image"]))
    config.pop("postCreateCommand")
    config["tasks"] = {"build-check": "echo checking; exit 3", "hello": "echo hi"}
    config["customizations"]["devjobs"]["triggers"] = {
        "build-check": "PostBuild",
        "hello": "Manual",
    }
    write_devcontainer(env["source"], config)
    code, out = run(env, "--trigger", "PostBuild")
    assert code == 1, out
    assert environment_conditions(env)["JobsSucceeded"]["status"] == "False"
    code, out = run(env, "hello")
    assert code == 0, out
    conditions = environment_conditions(env)
    assert conditions["Job.web.hello"]["status"] == "True"
    aggregate = conditions["JobsSucceeded"]
    assert (aggregate["status"], aggregate["reason"]) == ("False", "Failed"), aggregate
    assert "failed: web/build-check" in aggregate["message"]


def test_a_failing_job_reports_its_exit_code_and_exits_1(env: dict[str, Any]) -> None:
    code, out = run(env, "fail")
    assert code == 1, out
    assert "[fail] about to fail" in out
    summary = out.splitlines()[-1].split()
    assert summary[:2] == ["web/fail", "Failed"] and "3" in summary
    assert environment_conditions(env)["Job.web.fail"]["status"] == "False"


def test_a_parallel_job_with_one_failing_entry_fails(env: dict[str, Any]) -> None:
    code, out = run(env, "lint")
    assert code == 1, out
    assert "[lint/good] good entry" in out
    assert "[lint/bad] bad entry" in out
    assert "web/lint  Failed" in out


def test_running_twice_creates_nothing_new_and_rerun_starts_an_attempt(env: dict[str, Any]) -> None:
    code, out = run(env, "--trigger", "PostDeploy")
    assert code == 0 and "(created)" in out
    first = {j["metadata"]["name"] for j in jobs(env)}
    code, out = run(env, "--trigger", "PostDeploy")
    assert code == 0 and "(exists)" in out and "(created)" not in out
    assert {j["metadata"]["name"] for j in jobs(env)} == first
    code, out = run(env, "--trigger", "PostDeploy", "--rerun")
    assert code == 0 and "(created)" in out
    after = {j["metadata"]["name"] for j in jobs(env)}
    assert len(after) == 2 and first < after
    code, out = run(env, "--trigger", "PostDeploy")  # re-finds the latest attempt
    assert "(exists)" in out and {j["metadata"]["name"] for j in jobs(env)} == after


def test_an_image_that_cannot_be_found_fails_with_the_reason(env: dict[str, Any]) -> None:
    write_devcontainer(env["source"], devcontainer("devjobs.test/absent:1"))
    started = time.monotonic()
    code, out = run(env, "pass")
    assert code == 1, out
    assert time.monotonic() - started < 60  # not held until a deadline
    assert "ErrImageNeverPull" in out or "ImagePull" in out
    assert "web/pass  Failed" in out
    # The stuck Job is deleted (its pod would wait forever); the result stays recorded.
    assert "deleted job/" in out
    deadline = time.monotonic() + 30
    while jobs(env) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert jobs(env) == []
    condition = environment_conditions(env)["Job.web.pass"]
    assert condition["status"] == "False"
    assert "ErrImageNeverPull" in condition["message"] or "ImagePull" in condition["message"]
    assert environment_conditions(env)["JobsSucceeded"]["status"] == "False"
    record = env["kube"].get(
        f"/api/v1/namespaces/{env['namespace']}/configmaps/{configmap_name('pr-1', 'web/pass')}"
    )
    assert record is not None  # the log record (empty: nothing ran) is kept


def test_status_and_logs_show_the_run_and_logs_outlive_the_pods(
    env: dict[str, Any], kube_api: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from devjobs.cli import main

    code, _ = run(env, "--trigger", "PostDeploy")
    assert code == 0
    connection = ["--environment", env["ref"], "--kubeconfig", str(kube_api.kubeconfig)]
    capsys.readouterr()
    assert main(["status", *connection]) == 0
    status = capsys.readouterr().out
    assert "web/pass" in status and "Succeeded" in status and "PostDeploy" in status
    assert main(["logs", *connection, "pass"]) == 0
    logs = capsys.readouterr().out
    assert "[pass] hello from pass" in logs
    assert "[devjobs-setup-post-create] setup step done" in logs
    # The Job and its pods go; the kept tail remains readable.
    name = jobs(env)[0]["metadata"]["name"]
    env["kube"].delete(f"/apis/batch/v1/namespaces/{env['namespace']}/jobs/{name}", "Foreground")
    deadline = time.monotonic() + 60
    while jobs(env) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert main(["logs", *connection, "pass"]) == 0
    assert "hello from pass" in capsys.readouterr().out
    assert main(["status", *connection]) == 0
    assert "(gone)" in capsys.readouterr().out


def test_a_job_deleted_mid_run_is_reported_cancelled(env: dict[str, Any]) -> None:
    import threading

    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(zip(("code", "out"), run(env, "slow"), strict=True))
    )
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = env["kube"].list(f"/api/v1/namespaces/{env['namespace']}/pods")["items"]
        if any(p.get("status", {}).get("phase") == "Running" for p in pods):
            break
        time.sleep(0.3)
    name = jobs(env)[0]["metadata"]["name"]
    env["kube"].delete(f"/apis/batch/v1/namespaces/{env['namespace']}/jobs/{name}")
    thread.join(90)
    assert not thread.is_alive()
    assert result["code"] == 1, result["out"]
    assert "web/slow  Cancelled" in result["out"]
