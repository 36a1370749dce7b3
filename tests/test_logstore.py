"""Log store: job log tails kept in a ConfigMap owned by the Environment, bounded, readable
after the Job and its pods are gone."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devjobs.catalyst import GROUP as ENV_GROUP
from devjobs.catalyst import VERSION as ENV_VERSION
from devjobs.errors import DevjobsError
from devjobs.kube.client import Kube
from devjobs.kube.logstore import (
    MAX_DATA_BYTES,
    configmap_name,
    data_key,
    fetch_log_tails,
    log_configmap,
    read_log_tail,
    save_log_tail,
    tail_text,
)
from devjobs.resolver.environment import PLURAL as ENV_PLURAL

ENV = {
    "apiVersion": "catalyst.catalyst.dev/v1alpha1",
    "kind": "Environment",
    "metadata": {"name": "pr-1", "namespace": "ns", "uid": "0f0e-uid"},
}
SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KEY = r"^[-._a-zA-Z0-9]+$"


# --- pure ------------------------------------------------------------------------------


def test_configmap_name_is_readable_and_deterministic() -> None:
    name = configmap_name("pr-1", "web/test")
    assert name.startswith("devjobs-log-pr-1-web-test-")
    assert name == configmap_name("pr-1", "web/test")


def test_configmap_names_of_dash_ambiguous_pairs_differ() -> None:
    assert configmap_name("a-b", "c/d") != configmap_name("a", "b-c/d")


@given(env=st.text(min_size=1, max_size=300), key=st.text(min_size=1, max_size=300))
def test_configmap_name_is_always_a_valid_object_name(env: str, key: str) -> None:
    import re

    name = configmap_name(env, key)
    assert len(name) <= 253 and re.match(SUBDOMAIN, name)


@given(st.text(min_size=0, max_size=300))
def test_data_key_is_always_a_valid_configmap_key(container: str) -> None:
    import re

    key = data_key(container)
    assert len(key) <= 253 and re.match(KEY, key)


def test_data_key_of_a_container_name_is_readable() -> None:
    assert data_key("unit-test") == "unit-test.log"


def test_short_text_is_kept_whole() -> None:
    assert tail_text("a\nb\n", 100) == "a\nb\n"


def test_long_text_keeps_its_last_lines_within_the_bound() -> None:
    text = "".join(f"line {i}\n" for i in range(10_000))
    tail = tail_text(text, 1000)
    assert len(tail.encode()) <= 1000
    first, second, *_ = tail.split("\n")
    assert first.startswith("[devjobs: ") and first.endswith(" earlier bytes not kept]")
    assert second.startswith("line ")  # cut at a line start
    assert tail.endswith("line 9999\n")
    dropped = int(first.split()[1])
    assert dropped + len(tail.encode()) - len(first) - 1 == len(text.encode())


@given(st.text(max_size=3000), st.integers(min_value=80, max_value=2000))
def test_tail_is_always_within_the_bound_and_a_suffix(text: str, limit: int) -> None:
    tail = tail_text(text, limit)
    assert len(tail.encode()) <= limit
    body = tail.split("\n", 1)[1] if tail != text else tail
    assert text.endswith(body)


def test_configmap_is_owned_by_the_environment_and_labelled() -> None:
    cm = log_configmap("ns", ENV, "web/test", {"job": "ok\n"})
    meta = cm["metadata"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "catalyst.catalyst.dev/v1alpha1",
            "kind": "Environment",
            "name": "pr-1",
            "uid": "0f0e-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["devjobs.dev/environment"] == "pr-1"
    assert (meta["labels"]["devjobs.dev/source"], meta["labels"]["devjobs.dev/job"]) == (
        "web",
        "test",
    )
    assert meta["annotations"]["devjobs.dev/job-key"] == "web/test"
    assert cm["data"] == {"job.log": "ok\n"}


def test_many_containers_share_the_object_budget() -> None:
    logs = {f"c{i}": "x\n" * 100_000 for i in range(20)}
    cm = log_configmap("ns", ENV, "web/test", logs, max_bytes=512 * 1024)
    assert sum(len(v.encode()) for v in cm["data"].values()) <= MAX_DATA_BYTES


def test_an_environment_without_uid_is_refused() -> None:
    with pytest.raises(DevjobsError, match="metadata.uid"):
        log_configmap("ns", {"metadata": {"name": "pr-1"}}, "web/test", {})


def test_a_record_in_a_target_namespace_names_the_environment_instead_of_an_owner() -> None:
    """Owner references cannot cross namespaces: a record beside the jobs in Catalyst's
    target namespace says which namespace its Environment is in, and goes with the
    target namespace."""
    cm = log_configmap("team-shop-pr-1", ENV, "web/test", {"job": "ok\n"})
    assert cm["metadata"]["namespace"] == "team-shop-pr-1"
    assert cm["metadata"]["ownerReferences"] == []
    annotations = cm["metadata"]["annotations"]
    assert annotations["devjobs.dev/environment-namespace"] == "ns"
    assert annotations["devjobs.dev/environment"] == "pr-1"
    owned = log_configmap("ns", ENV, "web/test", {"job": "ok\n"})
    assert owned["metadata"]["ownerReferences"][0]["uid"] == "0f0e-uid"
    assert "devjobs.dev/environment-namespace" not in owned["metadata"]["annotations"]


# --- against the API server ------------------------------------------------------------


@pytest.fixture
def environment(kube_client: Any, namespace: str, catalyst_crds: list[str]) -> dict[str, Any]:
    from kubernetes import client

    body = {
        "apiVersion": f"{ENV_GROUP}/{ENV_VERSION}",
        "kind": "Environment",
        "metadata": {"name": "pr-1"},
        "spec": {"projectRef": {"name": "app"}, "type": "development"},
    }
    # Any: the generated client's models are not what the tests pass (plain dicts).
    api: Any = client.CustomObjectsApi(kube_client)
    return dict(
        api.create_namespaced_custom_object(ENV_GROUP, ENV_VERSION, namespace, ENV_PLURAL, body)
    )


def test_saved_tail_is_read_back_bounded_and_owned_by_the_environment(
    kube_client: Any, namespace: str, environment: dict[str, Any]
) -> None:
    from kubernetes import client

    big = "".join(f"output line {i}\n" for i in range(50_000))
    assert save_log_tail(
        Kube(kube_client),
        namespace,
        environment,
        "web/test",
        {"job": big, "side": "ok\n"},
        max_bytes=4096,
    )

    logs = read_log_tail(Kube(kube_client), namespace, "pr-1", "web/test")
    assert set(logs) == {"job", "side"}
    assert logs["side"] == "ok\n"
    assert len(logs["job"].encode()) <= 4096 and logs["job"].endswith("output line 49999\n")
    cm = client.CoreV1Api(kube_client).read_namespaced_config_map(
        configmap_name("pr-1", "web/test"), namespace
    )
    assert cm.metadata is not None and cm.metadata.owner_references is not None
    [owner] = cm.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == (
        "Environment",
        "pr-1",
        environment["metadata"]["uid"],
    )


def test_saving_the_same_tail_again_writes_nothing_and_a_new_tail_replaces_it(
    kube_client: Any, namespace: str, environment: dict[str, Any]
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(kube_client)
    name = configmap_name("pr-1", "web/test")
    assert (
        save_log_tail(
            Kube(kube_client), namespace, environment, "web/test", {"job": "one\n", "old": "x"}
        )
        is True
    )
    first = core.read_namespaced_config_map(name, namespace)
    assert first.metadata is not None
    version = first.metadata.resource_version
    assert (
        save_log_tail(
            Kube(kube_client), namespace, environment, "web/test", {"job": "one\n", "old": "x"}
        )
        is False
    )
    again = core.read_namespaced_config_map(name, namespace)
    assert again.metadata is not None and again.metadata.resource_version == version

    assert (
        save_log_tail(Kube(kube_client), namespace, environment, "web/test", {"job": "two\n"})
        is True
    )
    assert read_log_tail(Kube(kube_client), namespace, "pr-1", "web/test") == {"job": "two\n"}


def test_nothing_saved_reads_as_empty(
    kube_client: Any, namespace: str, environment: dict[str, Any]
) -> None:
    assert read_log_tail(Kube(kube_client), namespace, "pr-1", "web/never-ran") == {}


def test_tail_is_readable_after_the_job_and_its_pods_are_deleted(
    kube_client: Any, namespace: str, environment: dict[str, Any]
) -> None:
    from kubernetes import client

    batch = client.BatchV1Api(kube_client)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "web-test",
            "labels": {"devjobs.dev/source": "web", "devjobs.dev/job": "test"},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "job", "image": "devjobs.test/busybox:1", "command": ["true"]}
                    ],
                }
            },
        },
    }
    batch.create_namespaced_job(namespace, client.V1Job.model_validate(job))
    save_log_tail(Kube(kube_client), namespace, environment, "web/test", {"job": "PASS\n"})

    batch.delete_namespaced_job("web-test", namespace, propagation_policy="Foreground")
    # The Job can be gone before its last pod is (seen in CI: a Pending pod the Job
    # controller created as the deletion began), so wait for both.
    core = client.CoreV1Api(kube_client)
    deadline = time.monotonic() + 60

    def remaining() -> tuple[list[Any], list[Any]]:
        return batch.list_namespaced_job(namespace).items, core.list_namespaced_pod(namespace).items

    while remaining() != ([], []) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert remaining() == ([], [])

    assert read_log_tail(Kube(kube_client), namespace, "pr-1", "web/test") == {"job": "PASS\n"}


def test_containers_that_never_started_have_no_tail(
    kube_client: Any, namespace: str, environment: dict[str, Any]
) -> None:
    """Tier 1 has no node: the pod stays unscheduled (its log would read as empty)."""
    from kubernetes import client

    core = client.CoreV1Api(kube_client)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "never"},
        "spec": {"containers": [{"name": "job", "image": "devjobs.test/busybox:1"}]},
    }
    core.create_namespaced_pod(namespace, client.V1Pod.model_validate(pod))
    live = kube_client.sanitize_for_serialization(core.read_namespaced_pod("never", namespace))
    assert fetch_log_tails(Kube(kube_client), namespace, live) == {}


@pytest.mark.tier2
def test_tails_fetched_from_a_finished_pod_survive_its_deletion(
    kube_client: Any, kube_node: Any, namespace: str, environment: dict[str, Any]
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(kube_client)
    resources = {
        "limits": {"cpu": "100m", "memory": "32Mi"},
        "requests": {"cpu": "10m", "memory": "8Mi"},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-test-1"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "setup",
                    "image": kube_node.test_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "echo setting up"],
                    "resources": resources,
                }
            ],
            "containers": [
                {
                    "name": "job",
                    "image": kube_node.test_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "sh",
                        "-c",
                        "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; exit 3",
                    ],
                    "resources": resources,
                }
            ],
        },
    }
    core.create_namespaced_pod(namespace, client.V1Pod.model_validate(pod))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = core.read_namespaced_pod("web-test-1", namespace).status
        assert status is not None
        phase = status.phase
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.2)
    assert phase == "Failed"
    live = kube_client.sanitize_for_serialization(core.read_namespaced_pod("web-test-1", namespace))

    tails = fetch_log_tails(Kube(kube_client), namespace, live, max_bytes=2048)
    save_log_tail(Kube(kube_client), namespace, environment, "web/test", tails, max_bytes=2048)
    core.delete_namespaced_pod("web-test-1", namespace, grace_period_seconds=0)

    saved = read_log_tail(Kube(kube_client), namespace, "pr-1", "web/test")
    assert saved["setup"] == "setting up\n"
    assert saved["job"].endswith("line 2999\n") and len(saved["job"].encode()) <= 2048
