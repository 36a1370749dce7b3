"""`devjobs run --local` on the docker backend, against a real engine started by the test
run (tests/docker) and an image imported from busybox-static."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.docker import fixtures
from tests.docker.engine import TEST_IMAGE, DockerEngine
from tests.docker.fixtures import devjobs_containers
from tests.test_local_process import (
    MEET_A,
    MEET_B,
    devjobs_command,
    environ,
    jobs,
    statuses,
    workspace,
)

pytestmark = pytest.mark.docker
docker_engine = fixtures.docker_engine


def run(
    engine: DockerEngine, *args: str | Path, cwd: Path, backend: str = "docker"
) -> subprocess.CompletedProcess[str]:
    argv = devjobs_command(*args, *(["--backend", backend] if backend else []))
    return subprocess.run(
        argv,
        cwd=cwd,
        env=environ(DOCKER_HOST=engine.host),
        capture_output=True,
        text=True,
        timeout=120,
    )


def in_image(config: dict[str, Any]) -> dict[str, Any]:
    return {"image": TEST_IMAGE, **config}


def source(tmp_path: Path, config: dict[str, Any]) -> tuple[str, str]:
    return ("--source", f"app={workspace(tmp_path / 'app', config)}")


def document(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_job_runs_in_its_image_with_the_checkout_at_its_working_dir_and_env(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    config = in_image(
        {
            **jobs(
                {"look": "PostBuild"}, look='pwd; cat marker; echo "$GREETING"; ls /bin/busybox'
            ),
            "containerEnv": {"GREETING": "hello from the container"},
            "workspaceFolder": "/src/app",
        }
    )
    args = source(tmp_path, config)
    (tmp_path / "app" / "marker").write_text("from the checkout\n")
    done = run(docker_engine, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "[look] /src/app\n[look] from the checkout\n[look] hello from the container\n"
        "[look] /bin/busybox\n"
    ) in done.stdout
    assert devjobs_containers(docker_engine) == []


def test_writes_to_the_checkout_are_kept(docker_engine: DockerEngine, tmp_path: Path) -> None:
    config = in_image(jobs({"write": "PostBuild"}, write="echo built > out.txt"))
    done = run(docker_engine, *source(tmp_path, config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "app" / "out.txt").read_text() == "built\n"


def test_setup_steps_run_first_in_the_same_container_and_as_their_own_jobs(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    # /tmp/state is inside the container, not the checkout: only the same container sees it.
    config = in_image(
        {
            **jobs({"test": "PostDeploy"}, test="cat /tmp/state"),
            "onCreateCommand": "echo on-create > /tmp/state",
            "postCreateCommand": "echo post-create >> /tmp/state",
        }
    )
    done = run(docker_engine, *source(tmp_path, config), "-o", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[test] on-create\n[test] post-create\n" in done.stderr
    assert [(j["name"], j["trigger"]) for j in document(done)["jobs"]] == [
        ("on-create", "PreDeploy"),
        ("post-create", "PreDeploy"),
        ("test", "PostDeploy"),
    ]


def test_a_failing_setup_step_stops_the_job_in_its_container(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    config = in_image(
        {
            **jobs({"test": "PostBuild"}, test="echo test ran"),
            "onCreateCommand": "exit 6",
            "postCreateCommand": "echo post-create ran",
        }
    )
    done = run(docker_engine, *source(tmp_path, config), "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    job = document(done)["jobs"][0]
    assert (job["name"], job["status"], job["exitCode"]) == ("test", "failed", 6)
    assert job["message"] == "setup step on-create exited with 6"
    assert "ran" not in done.stderr


def test_parallel_entries_run_at_once_in_the_jobs_container(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    meet_a = MEET_A.replace("a.here", "/tmp/a.here").replace("b.here", "/tmp/b.here")
    meet_b = MEET_B.replace("a.here", "/tmp/a.here").replace("b.here", "/tmp/b.here")
    config = in_image(jobs({"both": "PostBuild"}, both={"a": meet_a, "b": meet_b}))
    done = run(docker_engine, *source(tmp_path, config), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[both:a] a met b" in done.stdout and "[both:b] b met a" in done.stdout


def test_exit_codes_come_through(docker_engine: DockerEngine, tmp_path: Path) -> None:
    triggers = {"bad": "PostBuild", "missing": "PostBuild"}
    config = in_image(jobs(triggers, bad="exit 9", missing=["no-such-program"]))
    done = run(docker_engine, *source(tmp_path, config), "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    codes = {j["name"]: j["exitCode"] for j in document(done)["jobs"]}
    assert codes["bad"] == 9
    assert codes["missing"] in (126, 127)


def test_a_job_without_an_image_needs_dash_dash_image(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    config = jobs({"t": "PostBuild"}, t="echo in $(cat /etc/passwd | head -c 4)")
    args = source(tmp_path, config)
    refused = run(docker_engine, *args, cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "devjobs: error: --image: jobs without an image run in the environment's build " in (
        refused.stderr
    )
    done = run(docker_engine, *args, "--image", TEST_IMAGE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[t] in root" in done.stdout


def test_auto_backend_uses_the_engine_at_docker_host(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    config = in_image(jobs({"where": "PostBuild"}, where="test -e /bin/busybox && echo inside"))
    done = run(docker_engine, *source(tmp_path, config), "-o", "json", cwd=tmp_path, backend="")
    assert done.returncode == 0, done.stderr
    assert document(done)["backend"] == "docker"


def test_timeout_cancels_the_job_and_removes_its_container(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    config = in_image(jobs({"slow": "PostBuild"}, slow="sleep 300"))
    done = run(docker_engine, *source(tmp_path, config), "--timeout", "2", "-o", "json",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert statuses(document(done)) == {"slow": "cancelled"}
    assert devjobs_containers(docker_engine) == []


def test_ctrl_c_exits_130_and_leaves_no_container(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    config = in_image(
        jobs({"slow": "PostBuild", "other": "PostBuild"}, slow="sleep 300", other="true")
    )
    proc = subprocess.Popen(
        devjobs_command(*source(tmp_path, config), "--backend", "docker", "-o", "json"),
        cwd=tmp_path,
        env=environ(DOCKER_HOST=docker_engine.host),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not devjobs_containers(docker_engine):
        assert time.monotonic() < deadline, "no container started"
        time.sleep(0.1)
    time.sleep(0.5)  # let the exec start inside it
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert statuses(json.loads(out)) == {"slow": "cancelled", "other": "cancelled"}
    assert devjobs_containers(docker_engine) == []
