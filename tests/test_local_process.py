"""`devjobs run --local` on the process backend: the real command, real repositories
(directories with a devcontainer.json), real child processes and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def workspace(directory: Path, config: dict[str, Any]) -> Path:
    """A repository checkout with `config` as its .devcontainer/devcontainer.json."""
    (directory / ".devcontainer").mkdir(parents=True, exist_ok=True)
    (directory / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    return directory


def jobs(triggers: dict[str, str], **tasks: Any) -> dict[str, Any]:
    """A devcontainer.json with `tasks` run at `triggers`."""
    return {"tasks": tasks, "customizations": {"devjobs": {"triggers": triggers}}}


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVJOBS_")}
    env["PYTHONPATH"] = str(ROOT)
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    return {**env, **extra}


def devjobs_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "devjobs", "run", "--local", *map(str, args)]


def devjobs(*args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        devjobs_command(*args),
        cwd=cwd,
        env=environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def app(tmp_path: Path, config: dict[str, Any]) -> tuple[str, ...]:
    """`--source app=DIR --backend process` for a checkout with `config`."""
    return ("--source", f"app={workspace(tmp_path / 'app', config)}", "--backend", "process")


def result_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {job["name"]: job["status"] for job in document["jobs"]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent, not devjobs, must reap it).
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


# --- commands ---------------------------------------------------------------------------


def test_string_command_runs_under_sh_and_each_line_is_prefixed_by_its_job(
    tmp_path: Path,
) -> None:
    config = jobs({"test": "PostBuild"}, test="echo sum=$((1+2)); echo second line")
    done = devjobs(*app(tmp_path, config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[test] sum=3\n[test] second line\n" in done.stdout
    assert "[test] succeeded in " in done.stdout
    assert "1 succeeded in " in done.stdout


def test_array_command_runs_without_a_shell(tmp_path: Path) -> None:
    config = jobs({"show": "PostBuild"}, show=["echo", "$HOME", "a  b"])
    done = devjobs(*app(tmp_path, config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[show] $HOME a  b\n" in done.stdout


def test_jobs_run_in_the_checkout_with_their_env_added(tmp_path: Path) -> None:
    config = {
        **jobs({"where": "PostBuild"}, where='echo "$PWD $GREETING $KEPT"'),
        "containerEnv": {"GREETING": "hi"},
    }
    args = app(tmp_path, config)
    env = environ(KEPT="from-caller")
    done = subprocess.run(
        devjobs_command(*args), cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"[where] {tmp_path / 'app'} hi from-caller\n" in done.stdout
    assert "the process backend runs commands directly on this machine" in done.stderr


def test_a_missing_program_fails_the_job_with_127(tmp_path: Path) -> None:
    config = jobs({"x": "PostBuild"}, x=["devjobs-no-such-program"])
    done = devjobs(*app(tmp_path, config), "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    job = result_of(done)["jobs"][0]
    assert (job["status"], job["exitCode"]) == ("failed", 127)
    assert "command not found: devjobs-no-such-program" in done.stderr


# --- order and failures -----------------------------------------------------------------


def test_points_run_in_lifecycle_order_and_manual_jobs_only_when_named(tmp_path: Path) -> None:
    config = jobs(
        {"late": "PostDeploy", "early": "PostBuild", "mid": "PreDeploy"},
        late="echo late",
        early="echo early",
        mid="echo mid",
        release="echo release",
    )
    done = devjobs(*app(tmp_path, config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    started = [line for line in done.stdout.splitlines() if "] started: " in line]
    assert started == [
        "[early] started: PostBuild",
        "[mid] started: PreDeploy",
        "[late] started: PostDeploy",
    ]
    named = devjobs(*app(tmp_path, config), "release", "early", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert [line for line in named.stdout.splitlines() if "] started: " in line] == [
        "[early] started: PostBuild",
        "[release] started: Manual",
    ]


def test_a_trigger_runs_only_that_point(tmp_path: Path) -> None:
    config = jobs({"a": "PostBuild", "b": "PostDeploy"}, a="echo a", b="echo b")
    done = devjobs(*app(tmp_path, config), "--trigger", "PostDeploy", "-o", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert statuses(result_of(done)) == {"b": "succeeded"}


def test_a_failed_job_fails_the_run_and_later_points_are_skipped(tmp_path: Path) -> None:
    config = jobs(
        {"lint": "PostBuild", "broken": "PostBuild", "smoke": "PostDeploy"},
        lint="echo fine",
        broken="echo about to fail; exit 3",
        smoke="echo never",
    )
    done = devjobs(*app(tmp_path, config), "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    document = result_of(done)
    assert statuses(document) == {"lint": "succeeded", "broken": "failed", "smoke": "skipped"}
    broken = document["jobs"][1]
    assert broken["exitCode"] == 3
    assert broken["outputTail"] == ["about to fail"]
    assert document["jobs"][2]["message"] == "PostBuild did not succeed"
    assert "never" not in done.stderr
    # -o json: stdout is only the document; the job output went to stderr.
    assert "[broken] about to fail" in done.stderr


def test_without_fail_fast_the_rest_of_the_point_still_runs(tmp_path: Path) -> None:
    config = jobs({"a": "PostBuild", "b": "PostBuild"}, a="exit 1", b="echo b ran")
    done = devjobs(*app(tmp_path, config), cwd=tmp_path)
    assert done.returncode == 1
    assert "[b] b ran" in done.stdout


def test_a_job_is_retried_up_to_its_retries(tmp_path: Path) -> None:
    config = {
        "customizations": {
            "devjobs": {
                "jobs": {
                    "flaky": {
                        "trigger": "PostBuild",
                        "retries": 2,
                        "command": "echo x >> tries; [ $(wc -l < tries) -ge 2 ]",
                    }
                }
            }
        }
    }
    done = devjobs(*app(tmp_path, config), "-o", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job = result_of(done)["jobs"][0]
    assert (job["status"], job["attempts"]) == ("succeeded", 2)
    assert "[flaky] started (attempt 2 of 3): PostBuild" in done.stderr


# --- parallel entries and parallel jobs -------------------------------------------------

# Two commands that can only both finish when they run at the same time: each waits
# (up to 20 s) for the file the other writes.
MEET_A = "touch a.here; i=0; while [ ! -e b.here ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; test -e b.here && echo a met b"  # noqa: E501
MEET_B = "touch b.here; i=0; while [ ! -e a.here ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; test -e a.here && echo b met a"  # noqa: E501


def test_parallel_entries_run_at_once_all_awaited_and_any_failure_fails(tmp_path: Path) -> None:
    config = jobs(
        {"both": "PostBuild"},
        both={"a": MEET_A, "b": MEET_B, "bad": "sleep 0.2; echo bad done; exit 4"},
    )
    done = devjobs(*app(tmp_path, config), "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    assert "[both:a] a met b" in done.stderr
    assert "[both:b] b met a" in done.stderr
    assert "[both:bad] bad done" in done.stderr
    job = result_of(done)["jobs"][0]
    assert (job["status"], job["exitCode"]) == ("failed", 4)


def test_dash_j_runs_independent_jobs_of_a_point_at_once(tmp_path: Path) -> None:
    config = jobs({"a": "PostBuild", "b": "PostBuild"}, a=MEET_A, b=MEET_B)
    done = devjobs(*app(tmp_path, config), "-j", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[a] a met b" in done.stdout and "[b] b met a" in done.stdout


# --- setup steps ------------------------------------------------------------------------


def test_setup_runs_once_per_source_before_the_first_job_that_needs_it(tmp_path: Path) -> None:
    config = {
        **jobs({"lint": "PostBuild", "smoke": "PostDeploy"}, lint="cat setup.log", smoke="true"),
        "onCreateCommand": "echo on-create >> setup.log",
        "postCreateCommand": "echo post-create >> setup.log",
    }
    args = app(tmp_path, config)
    done = devjobs(*args, "-o", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "app" / "setup.log").read_text() == "on-create\npost-create\n"
    assert [(j["name"], j["status"]) for j in result_of(done)["jobs"]] == [
        ("on-create", "succeeded"),
        ("post-create", "succeeded"),
        ("lint", "succeeded"),
        ("smoke", "succeeded"),
    ]
    assert "[lint] on-create\n[lint] post-create\n" in done.stderr


def test_the_first_failing_setup_step_stops_the_later_ones_and_fails_the_job(
    tmp_path: Path,
) -> None:
    config = {
        **jobs({"test": "PostBuild"}, test="echo test ran"),
        "onCreateCommand": "echo on-create; exit 2",
        "updateContentCommand": "echo update-content ran",
    }
    done = devjobs(*app(tmp_path, config), "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    document = result_of(done)
    # PreDeploy, where update-content has its own slot, is never reached.
    assert statuses(document) == {
        "on-create": "failed",
        "test": "failed",
        "update-content": "skipped",
    }
    test = next(job for job in document["jobs"] if job["name"] == "test")
    assert test["message"] == "setup job on-create failed"
    assert "update-content ran" not in done.stderr
    assert "test ran" not in done.stderr


def test_a_failed_init_container_job_stops_the_later_ones_at_pre_deploy(tmp_path: Path) -> None:
    config = {
        "onCreateCommand": "exit 5",
        "updateContentCommand": "echo update-content ran",
        "postCreateCommand": "echo post-create ran",
    }
    done = devjobs(*app(tmp_path, config), "--trigger", "PreDeploy", "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    assert statuses(result_of(done)) == {
        "on-create": "failed",
        "update-content": "failed",
        "post-create": "failed",
    }
    assert "ran" not in done.stderr


# --- stopping ---------------------------------------------------------------------------

SLEEPER = "sleep 300 & echo $! > child.pid; wait"
"""Leaves a grandchild (the backgrounded sleep) that only a process-group kill reaches."""


def test_timeout_cancels_the_job_and_kills_its_whole_process_group(tmp_path: Path) -> None:
    config = jobs({"slow": "PostBuild", "after": "PostDeploy"}, slow=SLEEPER, after="true")
    done = devjobs(*app(tmp_path, config), "--timeout", "1", "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    document = result_of(done)
    assert statuses(document) == {"slow": "cancelled", "after": "skipped"}
    assert document["jobs"][0]["message"] == "timed out after 1s"
    child = int((tmp_path / "app" / "child.pid").read_text())
    assert not alive(child)


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    stubborn = "trap '' TERM; sleep 300 & echo $! > child.pid; while true; do sleep 1; done"
    config = jobs({"stubborn": "PostBuild"}, stubborn=stubborn)
    done = devjobs(*app(tmp_path, config), "--timeout", "1", "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    assert statuses(result_of(done)) == {"stubborn": "cancelled"}
    assert not alive(int((tmp_path / "app" / "child.pid").read_text()))


def test_background_processes_left_by_a_finished_job_are_killed(tmp_path: Path) -> None:
    config = jobs({"leaky": "PostBuild"}, leaky="sleep 300 > /dev/null 2>&1 & echo $! > child.pid")
    done = devjobs(*app(tmp_path, config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not alive(int((tmp_path / "app" / "child.pid").read_text()))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_cancels_running_jobs_exits_130_and_leaves_no_process(
    tmp_path: Path, sig: signal.Signals
) -> None:
    config = jobs(
        {"slow": "PostBuild", "next": "PostBuild", "later": "PostDeploy"},
        slow=SLEEPER,
        next="echo next",
        later="echo later",
    )
    proc = subprocess.Popen(
        devjobs_command(*app(tmp_path, config), "-o", "json"),
        cwd=tmp_path,
        env=environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = int(wait_for(tmp_path / "app" / "child.pid"))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    document = json.loads(out)
    assert document["interrupted"] is True
    assert statuses(document) == {"slow": "cancelled", "next": "cancelled", "later": "cancelled"}
    assert document["jobs"][0]["message"] == "interrupted"
    assert document["jobs"][1]["message"] == "not started: interrupted"
    assert not alive(child)


def test_fail_fast_cancels_the_running_jobs_and_skips_the_rest(tmp_path: Path) -> None:
    config = jobs(
        {"slow": "PostBuild", "broken": "PostBuild", "queued": "PostBuild"},
        slow=SLEEPER,
        broken="while [ ! -s child.pid ]; do sleep 0.05; done; exit 1",
        queued="echo queued",
    )
    done = devjobs(*app(tmp_path, config), "-j", "2", "--fail-fast", "-o", "json", cwd=tmp_path)
    assert done.returncode == 1
    document = result_of(done)
    assert statuses(document) == {"slow": "cancelled", "broken": "failed", "queued": "skipped"}
    assert document["jobs"][0]["message"] == "cancelled by --fail-fast"
    assert not alive(int((tmp_path / "app" / "child.pid").read_text()))


# --- reports ----------------------------------------------------------------------------


def test_junit_report_has_a_suite_per_trigger_and_the_failure(tmp_path: Path) -> None:
    config = jobs(
        {"ok": "PostBuild", "bad": "PostBuild", "smoke": "PostDeploy"},
        ok="true",
        bad="echo 'expected 1 <got> 2'; exit 7",
        smoke="true",
    )
    report = tmp_path / "junit.xml"
    done = devjobs(*app(tmp_path, config), "--junit", report, cwd=tmp_path)
    assert done.returncode == 1
    root = ET.parse(report).getroot()
    assert [s.get("name") for s in root.findall("testsuite")] == ["PostBuild", "PostDeploy"]
    failure = root.find("testsuite/testcase[@name='bad']/failure")
    assert failure is not None
    assert failure.get("message") == "exit code 7: command exited with 7"
    assert failure.text == "expected 1 <got> 2"


def test_summary_table_lists_job_status_exit_code_and_duration(tmp_path: Path) -> None:
    config = jobs({"ok": "PostBuild", "bad": "PostBuild"}, ok="true", bad="exit 2")
    done = devjobs(*app(tmp_path, config), cwd=tmp_path)
    lines = done.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("JOB ")))
    assert lines[header].split() == ["JOB", "TRIGGER", "STATUS", "EXIT", "DURATION", "NOTE"]
    assert lines[header + 1].split()[:4] == ["ok", "PostBuild", "succeeded", "0"]
    assert lines[header + 2].split()[:4] == ["bad", "PostBuild", "failed", "2"]
    assert lines[-1].startswith("1 succeeded, 1 failed in ")


def test_with_several_sources_lines_are_prefixed_source_slash_job(tmp_path: Path) -> None:
    one = workspace(tmp_path / "one", jobs({"t": "PostBuild"}, t="echo from one"))
    two = workspace(tmp_path / "two", jobs({"t": "PostBuild"}, t="echo from two"))
    done = devjobs(
        "--source", f"one={one}", "--source", f"two={two}", "--backend", "process", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "[one/t] from one" in done.stdout and "[two/t] from two" in done.stdout


# --- inputs -----------------------------------------------------------------------------


def test_with_no_inputs_the_current_directory_with_a_devcontainer_runs(tmp_path: Path) -> None:
    here = workspace(tmp_path / "my-app", jobs({"hi": "PostBuild"}, hi="echo here"))
    done = devjobs("--backend", "process", "hi", cwd=here)
    assert done.returncode == 0, done.stderr
    assert "[hi] here" in done.stdout
    assert "running the devcontainer config of this directory as source 'my-app'" in done.stderr


def test_with_no_inputs_and_no_devcontainer_the_embedded_default_runs(tmp_path: Path) -> None:
    done = devjobs("-o", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "running the embedded default workspace" in done.stderr
    document = result_of(done)
    assert document["backend"] == "process"
    assert statuses(document) == {
        "post-create": "succeeded",
        "build-check": "succeeded",
        "test": "succeeded",
        "hello": "succeeded",
    }
    assert "[test] test: the setup ran first, 1 check passed" in done.stderr
    assert list(tmp_path.iterdir()) == []  # it ran in a copy, removed afterwards


def test_unknown_job_is_a_one_line_error(tmp_path: Path) -> None:
    config = jobs({"a": "PostBuild"}, a="true")
    done = devjobs(*app(tmp_path, config), "nope", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1].startswith("devjobs: error: nope: no such job in the plan")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-j", "0"], "must be at least 1"),
        (["--timeout", "-1"], "must be a positive number of seconds"),
        (["--trigger", "Later"], "unknown trigger 'Later'"),
        (["--backend", "vm"], "invalid choice: 'vm'"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = devjobs(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr


def test_docker_backend_without_an_engine_is_an_error(tmp_path: Path) -> None:
    config = jobs({"a": "PostBuild"}, a="true")
    args = ("--source", f"app={workspace(tmp_path / 'app', config)}", "--backend", "docker")
    done = devjobs(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert "devjobs: error: --backend docker: no Docker engine answers at" in done.stderr


def test_auto_backend_without_an_engine_falls_back_to_processes_with_a_warning(
    tmp_path: Path,
) -> None:
    config = jobs({"a": "PostBuild"}, a="echo ran")
    done = devjobs("--source", f"app={workspace(tmp_path / 'app', config)}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no Docker engine answers: using the process backend" in done.stderr


def test_running_on_a_cluster_without_an_environment_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devjobs", "run", "--trigger", "PostBuild"],
        cwd=tmp_path,
        env=environ(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "devjobs: error: --environment NAMESPACE/NAME is required to run on a cluster "
        "(or run on this machine with --local)\n"
    )


def test_on_a_terminal_the_live_display_runs_and_ends_with_the_summary(tmp_path: Path) -> None:
    """The TTY path (rich Live), through a real pseudo-terminal."""
    import pty
    import re

    config = jobs({"tick": "PostBuild"}, tick="for i in 1 2 3; do echo tick $i; sleep 0.3; done")
    argv = devjobs_command(*app(tmp_path, config))
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes devjobs, on the terminal
        os.chdir(tmp_path)
        os.execve(argv[0], argv, {**environ(), "COLUMNS": "100", "TERM": "xterm"})
    output = bytearray()
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        output.extend(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = output.decode(errors="replace")
    assert "\x1b[" in text  # drawn with terminal escapes, not plain lines
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")
    assert "running    tick" in plain  # the live panel, while the job ran
    assert "[tick] tick 3" in plain
    assert "1 succeeded in " in plain
