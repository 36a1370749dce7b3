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
from typing import Any, TypeVar

import pytest

from tests.gitserver import GitDaemon, RepoRoot

pytestmark = pytest.mark.tier2

T = TypeVar("T")
GROUP, VERSION = "catalyst.catalyst.dev", "v1alpha1"


def wait(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


class Catalyst:
    """What the test does in Catalyst's place, through the real API."""

    def __init__(self, client: Any, namespace: str, image: str) -> None:
        from kubernetes import client as k

        self.ns = namespace
        self.image = image
        # Any: the generated client's models are not what the tests pass (plain dicts).
        self.custom: Any = k.CustomObjectsApi(client)
        self.batch: Any = k.BatchV1Api(client)
        self.apps: Any = k.AppsV1Api(client)
        self.core: Any = k.CoreV1Api(client)

    def create_project(self, url: str) -> None:
        jobs = [
            {"name": "check", "trigger": "PostBuild", "command": ["true"], "image": self.image},
            {"name": "smoke", "trigger": "PostDeploy", "command": ["true"], "image": self.image},
            {"name": "lint", "trigger": "Manual", "command": ["true"], "image": self.image},
        ]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Project",
            "metadata": {"name": "shop", "namespace": self.ns},
            "spec": {
                "sources": [{"name": "app", "repositoryUrl": url, "branch": "main", "jobs": jobs}],
                "templates": {
                    "development": {
                        "type": "manifest",
                        "builds": [{"name": "app", "sourceRef": "app"}],
                    }
                },
            },
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "projects", body)

    def create_environment(self, sha: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Environment",
            "metadata": {"name": "pr-1", "namespace": self.ns},
            "spec": {
                "projectRef": {"name": "shop"},
                "type": "development",
                "deploymentMode": "development",
                "sources": [{"name": "app", "branch": "main", "commitSha": sha}],
            },
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "environments", body)
        self.set_phase("Building")

    def env(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "environments", "pr-1"
        )
        return obj

    def set_phase(self, phase: str) -> None:
        """As Catalyst does: an update of the whole status, resourceVersion checked, read
        again and retried when devjobs wrote its conditions in between (409 Conflict)."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(10):
            env = self.env()
            status = env.get("status") or {}
            status["phase"] = phase
            env["status"] = status
            try:
                self.custom.replace_namespaced_custom_object_status(
                    GROUP, VERSION, self.ns, "environments", "pr-1", env
                )
                return
            except ApiException as error:
                if error.status != 409 or attempt == 9:
                    raise

    def set_commit(self, sha: str) -> None:
        patch = {"spec": {"sources": [{"name": "app", "branch": "main", "commitSha": sha}]}}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "environments", "pr-1", patch
        )

    def annotate(self, key: str, value: str) -> None:
        patch = {"metadata": {"annotations": {key: value}}}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "environments", "pr-1", patch
        )

    def build(self, sha: str) -> str:
        name = f"build-app-{sha[:7]}"
        container = {
            "name": "build",
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "echo built"],
            "resources": _resources(),
        }
        body = {
            "metadata": {
                "name": name,
                "labels": {"catalyst.dev/job-type": "build", "catalyst.dev/build": "app"},
            },
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
            },
        }
        self.batch.create_namespaced_job(self.ns, body)
        return name

    def build_done(self, name: str) -> bool:
        job = self.batch.read_namespaced_job(name, self.ns)
        return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])

    def deploy_web(self) -> None:
        container = {
            "name": "web",
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["sleep", "3600"],
            "resources": _resources(),
        }
        labels = {"app": "web"}
        body = {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
                },
            },
        }
        self.apps.create_namespaced_deployment(self.ns, body)

    def devjobs_jobs(self) -> dict[str, Any]:
        jobs = self.batch.list_namespaced_job(
            self.ns, label_selector="app.kubernetes.io/managed-by=devjobs"
        )
        return {j.metadata.name: j for j in jobs.items if not j.metadata.deletion_timestamp}

    def jobs_of(self, trigger: str) -> list[Any]:
        return [
            j
            for j in self.devjobs_jobs().values()
            if j.metadata.labels["devjobs.dev/trigger"] == trigger
        ]

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in (self.env().get("status") or {}).get("conditions") or []}

    def events(self, reason: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(self.ns).items if e.reason == reason]


def _resources() -> dict[str, Any]:
    quantities = {"cpu": "50m", "memory": "32Mi"}
    return {"requests": quantities, "limits": quantities}


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
    repo = git_repos.create("app")
    repo.write(".devcontainer/devcontainer.json", '{"image": "devjobs.test/busybox:1"}')
    sha1 = repo.commit("first")
    catalyst = Catalyst(kube_client, namespace, kube_node.test_image)
    catalyst.create_project(git_daemon.url("app"))
    catalyst.create_environment(sha1)
    ctl = controller()

    # Waiting for the build: conditions say so, no Job is created.
    conds = wait("Waiting conditions", lambda: catalyst.conditions().get("Job.app.check"))
    assert conds["status"] == "Unknown" and conds["reason"] == "Waiting", ctl.text()
    assert conds["message"].startswith(f"commit {sha1[:7]}: waiting")
    catalyst.set_phase("Ready")  # Ready alone must not fire PostBuild: the build is missing
    time.sleep(2)
    assert catalyst.devjobs_jobs() == {}, ctl.text()

    # The build of the commit succeeds on the real node: PostBuild fires.
    build = catalyst.build(sha1)
    try:
        wait("the build Job to complete", lambda: catalyst.build_done(build), 90)
    except AssertionError:
        print("PODS", catalyst.core.list_namespaced_pod(namespace))
        print("JOB", catalyst.batch.read_namespaced_job(build, namespace).status)
        print(
            "EVENTS",
            [(e.reason, e.message) for e in catalyst.core.list_namespaced_event(namespace).items],
        )
        raise
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
    failed: Any = wait(
        "conditions of every job",
        lambda: (
            (c := catalyst.conditions())
            and all(
                c.get(f"Job.app.{n}", {}).get("status") == "False"
                for n in ("check", "smoke", "lint")
            )
            and c
        ),
        60,
    )
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
    check_cond = wait(
        "the new commit's conditions",
        lambda: (
            (c := catalyst.conditions().get("Job.app.check"))
            and c["message"].startswith(f"commit {sha2[:7]}")
            and c
        ),
        30,
    )
    assert check_cond["status"] == "Unknown" and check_cond["reason"] == "Waiting"
    assert catalyst.conditions()["Ready"]["status"] if "Ready" in catalyst.conditions() else True
    assert ctl.stop() == 0, ctl.text()
