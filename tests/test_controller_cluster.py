"""The controller against the real test cluster, with the test playing Catalyst's operator.

The controller runs as its own process (`devjobs controller`), as it would in a pod:
the test creates the Project and Environment, moves `status.phase`, creates the build Job
(`build-<build>-<sha7>`, run by the real node) and the `web` Deployment, annotates a
Manual request, kills the controller with SIGKILL and starts it again, and moves the
Environment to a new commit. The sources are served by `git daemon`; the jobs' pods clone
with an image the node does not have, so they fail (or wait) honestly: what is checked is
when Jobs appear, for which commit, and what the conditions say.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.catalyst import Catalyst, ready_condition, source_repo, wait
from tests.gitserver import GitDaemon, RepoRoot

pytestmark = pytest.mark.tier2


class ControllerProcess:
    """`devjobs controller` as a child process, its log kept in a file."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path, cache: Path) -> None:
        self.argv = [
            sys.executable, "-m", "devjobs", "controller", "--kubeconfig", str(kubeconfig),
            "-n", namespace, "--project-namespace", "", "--leader-election-namespace", namespace,
            "--lease-seconds", "3", "--cache-dir", str(cache), "--git-image", "devjobs.test/none:1",
        ]  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def controller(
    kube_api: Any, namespace: str, tmp_path: Path
) -> Iterator[Callable[[], ControllerProcess]]:
    started: list[ControllerProcess] = []

    def make() -> ControllerProcess:
        proc = ControllerProcess(kube_api.kubeconfig, namespace, tmp_path / "controller.log",
                                 tmp_path / "cache")  # fmt: skip
        proc.start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
    if os.environ.get("DEVJOBS_SHOW_CONTROLLER_LOG"):
        print((tmp_path / "controller.log").read_text(errors="replace"))


def test_jobs_run_by_themselves_through_the_lifecycle_and_survive_a_restart(
    kube_client: Any,
    catalyst_crds: list[str],
    project_crds: list[str],
    kube_node: Any,
    namespace: str,
    git_repos: RepoRoot,
    git_daemon: GitDaemon,
    controller: Callable[[], ControllerProcess],
) -> None:
    repo, sha1 = source_repo(git_repos)
    catalyst = Catalyst(kube_client, namespace, kube_node.test_image)
    catalyst.create(git_daemon.url("app"), sha1)
    catalyst.set_condition(ready_condition())  # Catalyst's own: devjobs must leave it be
    ctl = controller()

    # Waiting for the build: conditions say so, no Job is created.
    conds = wait("Waiting conditions", lambda: catalyst.conditions().get("Job.app.check"))
    assert conds["status"] == "Unknown" and conds["reason"] == "Waiting", ctl.text()
    assert conds["message"].startswith(f"commit {sha1[:7]}: waiting")
    catalyst.set_phase("Ready")  # Ready alone must not fire PostBuild: the build is missing
    time.sleep(2)
    assert catalyst.devjobs_jobs() == {}, ctl.text()

    # The build of the commit succeeds on the real node: PostBuild fires.
    catalyst.built(sha1)
    (check,) = wait("the PostBuild Job", lambda: catalyst.jobs_of("PostBuild"), 30)
    assert check.metadata.annotations["devjobs.dev/commit"] == sha1
    assert check.metadata.owner_references[0].name == "pr-1"
    assert catalyst.jobs_of("PostDeploy") == []

    # The workload becomes Ready: PostDeploy fires.
    catalyst.deploy_web()
    wait("the PostDeploy Job", lambda: catalyst.jobs_of("PostDeploy"), 90)

    # Manual request: started and cleared.
    catalyst.annotate("devjobs.dev/run", "lint")
    wait("the Manual Job", lambda: catalyst.jobs_of("Manual"), 30)
    wait(
        "the request to be cleared",
        lambda: "devjobs.dev/run" not in (catalyst.env()["metadata"].get("annotations") or {}),
        30,
    )
    # The clone image does not exist on the node: each job is reported Failed, not stuck.
    every_job = {f"Job.app.{n}": "False" for n in ("check", "smoke", "lint")}
    failed = catalyst.wait_conditions("conditions of every job", every_job, 60)
    assert failed["JobsSucceeded"]["status"] == "False"

    # Kill it mid-run, start again: no duplicate Job, no lost result.
    before = set(catalyst.devjobs_jobs())
    ctl.kill()
    conditions_before = {k: (v["status"], v["reason"]) for k, v in catalyst.conditions().items()}
    ctl = controller()
    time.sleep(6)  # the Lease of the killed process expires after 3s
    assert set(catalyst.devjobs_jobs()) == before, ctl.text()
    after = {k: (v["status"], v["reason"]) for k, v in catalyst.conditions().items()}
    assert after == conditions_before

    # A new commit: the old commit's unfinished Jobs are cancelled, conditions start over.
    sha2 = repo.commit("second")
    catalyst.set_commit(sha2)
    wait("Cancelled events", lambda: catalyst.events("Cancelled"), 30)
    wait(
        "the old commit's unfinished Jobs to go",
        lambda: not [j for j in catalyst.devjobs_jobs().values()
                     if j.metadata.annotations["devjobs.dev/commit"] == sha1
                     and not any(c.status == "True" and c.type in ("Complete", "Failed")
                                 for c in j.status.conditions or [])],
        30,
    )  # fmt: skip
    check_cond = catalyst.wait_condition_at("the new commit's conditions", "Job.app.check", sha2)
    assert check_cond["status"] == "Unknown" and check_cond["reason"] == "Waiting"
    # Through every write, the restart and the new commit, Catalyst's condition stayed.
    ready = catalyst.conditions()["Ready"]
    assert {k: ready[k] for k in ready_condition()} == ready_condition()
    assert ctl.stop() == 0, ctl.text()
