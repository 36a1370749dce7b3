"""Two controller replicas on one Lease: only the holder acts; the other takes over when
the holder is killed (SIGKILL: no release, the Lease must expire).

Two real `devjobs controller` processes against the tier-1 API server. What "acts" means
is read from the API server, not from the logs alone: every write to the Environment's
status records its field manager and every Event its source, and the Lease says who
holds it and how many times it changed hands.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.catalyst import Catalyst, source_repo, wait
from tests.gitserver import GitDaemon, RepoRoot
from tests.test_controller_cluster import ControllerProcess


@pytest.fixture
def replicas(kube_api: Any, namespace: str, tmp_path: Path) -> Iterator[list[ControllerProcess]]:
    procs = []
    for name in ("a", "b"):
        log, cache = tmp_path / f"controller-{name}.log", tmp_path / f"cache-{name}"
        proc = ControllerProcess(kube_api.kubeconfig, namespace, log, cache)
        proc.argv += ["--identity", f"replica-{name}"]
        procs.append(proc)
    yield procs
    for proc in procs:
        proc.stop()


def lease(catalyst: Catalyst) -> dict[str, Any]:
    """The Lease's spec; empty before anyone created it."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    coordination: Any = client.CoordinationV1Api(catalyst.custom.api_client)
    try:
        obj = coordination.read_namespaced_lease("devjobs-controller", catalyst.ns)
    except ApiException as error:
        if error.status == 404:
            return {}
        raise
    spec: dict[str, Any] = catalyst.custom.api_client.sanitize_for_serialization(obj.spec)
    return spec


def status_writes(catalyst: Catalyst) -> int:
    """How many writes changed the Environment's status (its resourceVersion moves on
    each one; nobody else writes status in this test once the phase is set)."""
    return int(catalyst.env()["metadata"]["resourceVersion"])


def test_only_the_lease_holder_acts_and_the_other_takes_over_when_it_is_killed(
    kube_client: Any,
    catalyst_crds: list[str],
    project_crds: list[str],
    namespace: str,
    git_repos: RepoRoot,
    git_daemon: GitDaemon,
    replicas: list[ControllerProcess],
) -> None:
    repo, sha1 = source_repo(git_repos)
    catalyst = Catalyst(kube_client, namespace)
    catalyst.create(git_daemon.url("app"), sha1)
    first, second = replicas
    first.start()
    wait(
        "replica-a to hold the Lease", lambda: lease(catalyst).get("holderIdentity") == "replica-a"
    )
    second.start()
    wait("replica-b to wait", lambda: "waiting for Lease" in second.text(), 30)

    conds = wait("conditions of commit 1", lambda: catalyst.conditions().get("Job.app.check"), 30)
    assert conds["message"].startswith(f"commit {sha1[:7]}")
    time.sleep(4)  # longer than the 3s Lease: b must keep waiting while a renews
    assert lease(catalyst)["holderIdentity"] == "replica-a"
    assert "conditions written" in first.text()
    assert "leading" not in second.text() and "conditions written" not in second.text()
    version = status_writes(catalyst)
    time.sleep(2)
    assert status_writes(catalyst) == version, "a settled Environment was written again"

    # The holder dies without releasing: b waits the Lease out, then takes over and acts.
    first.kill()
    killed = time.monotonic()
    wait("replica-b to take the Lease", lambda: lease(catalyst).get("holderIdentity")
         == "replica-b", 30)  # fmt: skip
    took = time.monotonic() - killed
    assert took >= 2.0, f"took over after {took:.1f}s, before the 3s Lease could expire"
    spec = lease(catalyst)
    assert spec["leaseTransitions"] == 1, json.dumps(spec)

    sha2 = repo.commit("second")
    catalyst.set_commit(sha2)
    moved = catalyst.wait_condition_at(
        "conditions of commit 2, written by replica-b", "Job.app.check", sha2
    )
    assert moved["reason"] == "Waiting"
    assert "conditions written" in second.text()
    assert second.stop() == 0, second.text()
