"""job_state: what a batch/v1 Job and its pods (API JSON) say about a devjobs job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from devjobs.kube.jobstate import Phase, job_state


def make_job(
    *,
    conditions: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    failed: int = 0,
    suspend: bool = False,
    completion: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "web-test-abc12",
        "labels": {
            "app.kubernetes.io/managed-by": "devjobs",
            "devjobs.dev/source": "web",
            "devjobs.dev/job": "test",
        },
        "annotations": {"devjobs.dev/commit": "0123456789abcdef"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T10:05:00Z"
    status: dict[str, Any] = {"startTime": "2024-05-01T10:00:00Z", "failed": failed}
    if conditions:
        status["conditions"] = conditions
    if completion:
        status["completionTime"] = completion
    return {"metadata": meta, "spec": {"suspend": suspend}, "status": status}


def cond(
    type_: str, reason: str = "", message: str = "", at: str = "2024-05-01T10:02:00Z"
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    }


def make_pod(
    name: str = "p1",
    *,
    created: str = "2024-05-01T10:00:01Z",
    phase: str = "Pending",
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    if conditions is not None:
        status["conditions"] = conditions
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


def terminated(
    name: str, code: int, at: str = "2024-05-01T10:01:00Z", reason: str = "Error"
) -> dict[str, Any]:
    return {
        "name": name,
        "state": {"terminated": {"exitCode": code, "reason": reason, "finishedAt": at}},
    }


def waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}}


def test_job_without_pods_is_pending_and_names_itself_from_labels() -> None:
    state = job_state(make_job(), [])
    assert state.phase is Phase.PENDING
    assert state.reason == "Pending"
    assert (state.source, state.job, state.key) == ("web", "test", "web/test")
    assert state.commit == "0123456789abcdef"
    assert state.job_name == "web-test-abc12"
    assert state.started == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert state.exit_code is None and state.finished is None


def test_unschedulable_pod_is_pending_with_the_schedulers_message() -> None:
    pod = make_pod(
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available",
            }
        ]
    )
    state = job_state(make_job(), [pod])
    assert state.phase is Phase.PENDING
    assert state.message == "Unschedulable: 0/1 nodes are available"


def test_running_pod_makes_the_job_running_and_counts_the_attempt() -> None:
    pod = make_pod(phase="Running", containers=[{"name": "job", "state": {"running": {}}}])
    assert job_state(make_job(), [pod]).phase is Phase.RUNNING
    retried = job_state(make_job(failed=2), [pod])
    assert retried.reason == "Running"
    assert retried.message == "running (attempt 3)"


def test_complete_condition_is_success_with_exit_code_zero_and_completion_time() -> None:
    job = make_job(conditions=[cond("Complete")], completion="2024-05-01T10:03:00Z")
    state = job_state(job, [make_pod(phase="Succeeded", containers=[terminated("job", 0)])])
    assert state.phase is Phase.SUCCEEDED
    assert state.reason == "Succeeded"
    assert state.exit_code == 0
    assert state.finished == datetime(2024, 5, 1, 10, 3, tzinfo=UTC)


def test_success_criteria_met_counts_as_success_before_complete_is_set() -> None:
    state = job_state(make_job(conditions=[cond("SuccessCriteriaMet")]), [])
    assert state.phase is Phase.SUCCEEDED
    assert state.finished == datetime(2024, 5, 1, 10, 2, tzinfo=UTC)


def test_backoff_limit_failure_keeps_the_reason_and_the_failing_containers_exit_code() -> None:
    job = make_job(
        conditions=[
            cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        ],
        failed=2,
    )
    pods = [
        make_pod(
            "p1", created="2024-05-01T10:00:01Z", phase="Failed", containers=[terminated("job", 3)]
        ),
        make_pod(
            "p2", created="2024-05-01T10:00:30Z", phase="Failed", containers=[terminated("job", 2)]
        ),
    ]
    state = job_state(job, pods)
    assert state.phase is Phase.FAILED
    assert state.reason == "BackoffLimitExceeded"
    assert state.exit_code == 2  # the latest attempt's
    assert "container job exited with code 2" in state.message
    assert "backoff limit" in state.message


def test_deadline_exceeded_keeps_its_reason() -> None:
    job = make_job(
        conditions=[
            cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        ]
    )
    state = job_state(job, [])
    assert (state.phase, state.reason, state.exit_code) == (Phase.FAILED, "DeadlineExceeded", None)


def test_failure_target_is_failure_before_the_failed_condition_lands() -> None:
    job = make_job(conditions=[cond("FailureTarget", "BackoffLimitExceeded")])
    assert job_state(job, []).reason == "BackoffLimitExceeded"


def test_pod_failure_policy_becomes_plain_failed_with_the_jobs_message() -> None:
    job = make_job(
        conditions=[
            cond("Failed", "PodFailurePolicy", "Container job for pod x failed with exit code 42")
        ]
    )
    state = job_state(job, [make_pod(phase="Failed", containers=[terminated("job", 42)])])
    assert state.reason == "Failed"
    assert state.exit_code == 42
    assert state.message.startswith("PodFailurePolicy: Container job")


def test_the_container_that_failed_first_is_blamed_among_parallel_siblings() -> None:
    job = make_job(conditions=[cond("Failed", "BackoffLimitExceeded")])
    pod = make_pod(
        phase="Failed",
        containers=[
            terminated("lint", 137, at="2024-05-01T10:01:09Z", reason="OOMKilled"),
            terminated("test", 1, at="2024-05-01T10:01:05Z"),
            terminated("fmt", 0, at="2024-05-01T10:01:01Z"),
        ],
    )
    state = job_state(job, [pod])
    assert state.exit_code == 1
    assert "container test exited with code 1" in state.message


def test_failing_init_container_exit_code_is_reported_with_its_reason() -> None:
    job = make_job(conditions=[cond("Failed", "BackoffLimitExceeded")])
    pod = make_pod(
        phase="Failed", init=[terminated("setup", 137, reason="OOMKilled")], containers=[]
    )
    state = job_state(job, [pod])
    assert state.exit_code == 137
    assert "container setup exited with code 137 (OOMKilled)" in state.message


def test_image_that_can_never_be_pulled_fails_the_job_at_once_with_the_detail() -> None:
    for reason in (
        "ErrImageNeverPull",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
    ):
        pod = make_pod(containers=[waiting("job", reason, 'image "x:1" is not present')])
        state = job_state(make_job(), [pod])
        assert state.phase is Phase.FAILED, reason
        assert state.reason == "Failed"
        assert state.message == f'container job: {reason}: image "x:1" is not present'


def test_ordinary_waiting_reason_is_pending_not_failed() -> None:
    pod = make_pod(containers=[waiting("job", "ContainerCreating")])
    state = job_state(make_job(), [pod])
    assert state.phase is Phase.PENDING
    assert state.message == "container job: ContainerCreating"


def test_job_being_deleted_before_finishing_is_cancelled() -> None:
    pod = make_pod(phase="Running", containers=[{"name": "job", "state": {"running": {}}}])
    state = job_state(make_job(deleting=True), [pod])
    assert (state.phase, state.reason) == (Phase.CANCELLED, "Cancelled")
    assert state.finished == datetime(2024, 5, 1, 10, 5, tzinfo=UTC)


def test_finished_job_being_deleted_keeps_its_outcome() -> None:
    job = make_job(conditions=[cond("Complete")], deleting=True)
    assert job_state(job, []).phase is Phase.SUCCEEDED


def test_suspended_job_is_pending() -> None:
    state = job_state(make_job(suspend=True), [])
    assert (state.phase, state.message) == (Phase.PENDING, "job is suspended")


def test_malformed_input_never_raises() -> None:
    state = job_state({"metadata": None, "status": {"conditions": "x"}}, [{"status": None}])
    assert state.phase is Phase.PENDING
    assert state.job_name is None and state.commit is None


# --- against the API server: real Job and pod JSON --------------------------------------


def _real_job(kube_client: Any, namespace: str) -> dict[str, Any]:
    from kubernetes import client

    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "web-test",
            "labels": {"devjobs.dev/source": "web", "devjobs.dev/job": "test"},
            "annotations": {"devjobs.dev/commit": "0123456789abcdef"},
            "finalizers": ["devjobs.test/hold"],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"devjobs.test/no-such-node": "x"},
                    "containers": [
                        {"name": "job", "image": "devjobs.test/busybox:1", "command": ["true"]}
                    ],
                }
            },
        },
    }
    batch = client.BatchV1Api(kube_client)
    batch.create_namespaced_job(namespace, client.V1Job.model_validate(job))
    return job


def _read(kube_client: Any, namespace: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from kubernetes import client

    job = client.BatchV1Api(kube_client).read_namespaced_job("web-test", namespace)
    pods = client.CoreV1Api(kube_client).list_namespaced_pod(
        namespace, label_selector="batch.kubernetes.io/job-name=web-test"
    )
    ser = kube_client.sanitize_for_serialization
    return ser(job), [ser(p) for p in pods.items]


def test_real_unschedulable_job_is_pending_then_cancelled_when_deleted(
    kube_client: Any, namespace: str
) -> None:
    """The Job controller makes a pod the scheduler cannot place (no node matches)."""
    import time

    from kubernetes import client

    _real_job(kube_client, namespace)
    deadline = time.monotonic() + 30
    while True:
        job, pods = _read(kube_client, namespace)
        state = job_state(job, pods)
        if state.message.startswith("Unschedulable") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (state.phase, state.reason, state.key) == (Phase.PENDING, "Pending", "web/test")
    assert state.message.startswith("Unschedulable: ") and "node" in state.message
    assert state.commit == "0123456789abcdef" and state.job_name == "web-test"

    batch = client.BatchV1Api(kube_client)
    batch.delete_namespaced_job("web-test", namespace, propagation_policy="Background")
    job, pods = _read(kube_client, namespace)  # held by the test's finalizer
    state = job_state(job, pods)
    assert (state.phase, state.reason) == (Phase.CANCELLED, "Cancelled")
    assert state.finished is not None
    batch.patch_namespaced_job(
        "web-test",
        namespace,
        [{"op": "remove", "path": "/metadata/finalizers"}],
        _content_type="application/json-patch+json",
    )
