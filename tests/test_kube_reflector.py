"""The one reflector (`devjobs.kube.reflector`) against a real API server (tier 1)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from devjobs.kube.client import Kube
from devjobs.kube.reflector import EventType, Reflector
from tests.cluster.restart import restart_apiserver

Seen = list[tuple[EventType, str]]


def configmaps(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps"


def create(kube: Kube, namespace: str, name: str, labels: Mapping[str, str] | None = None) -> None:
    body = {"metadata": {"name": name, "labels": dict(labels or {"t": "1"})}, "data": {"a": "1"}}
    kube.request("POST", configmaps(namespace), body=body)


def recorder() -> tuple[Seen, Callable[..., None]]:
    seen: Seen = []

    def listen(event: EventType, old: Any, new: Any) -> None:
        obj = new if new is not None else old
        seen.append((event, obj["metadata"]["name"]))

    return seen, listen


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_a_reflector_lists_then_reports_every_change_once_to_every_listener(
    kube_client: Any, namespace: str, stop: threading.Event
) -> None:
    kube = Kube(kube_client)
    create(kube, namespace, "before")
    create(kube, namespace, "other", labels={"t": "2"})
    reflector = Reflector(kube, configmaps(namespace), label_selector="t=1", kind="ConfigMap")
    first, listen_first = recorder()
    second, listen_second = recorder()
    reflector.add_listener(listen_first)
    reflector.add_listener(listen_second)
    reflector.start(stop)
    assert reflector.synced.wait(10)
    create(kube, namespace, "after")
    path = f"{configmaps(namespace)}/after"
    kube.request(
        "PATCH", path, body={"data": {"a": "2"}}, content_type="application/merge-patch+json"
    )
    kube.delete(path)
    expected = [
        ("ADDED", "before"),
        ("ADDED", "after"),
        ("MODIFIED", "after"),
        ("DELETED", "after"),
    ]
    wait_until(lambda: len(first) >= 4)
    assert first == expected
    assert second == expected
    assert [o["metadata"]["name"] for o in reflector.items()] == ["before"]
    assert reflector.items()[0]["kind"] == "ConfigMap"
    assert reflector.lists == 1


def test_a_listener_added_late_is_told_of_what_is_already_there(
    kube_client: Any, namespace: str, stop: threading.Event
) -> None:
    kube = Kube(kube_client)
    create(kube, namespace, "one")
    reflector = Reflector(kube, configmaps(namespace), label_selector="t=1")
    reflector.start(stop)
    assert reflector.synced.wait(10)
    seen, listen = recorder()
    reflector.add_listener(listen)
    assert seen == [("ADDED", "one")]
    assert reflector.get(namespace, "one") is not None


def test_a_reflector_resumes_after_the_api_server_restarts_and_loses_nothing(
    kube_client: Any, namespace: str, stop: threading.Event
) -> None:
    kube = Kube(kube_client)
    reflector = Reflector(kube, configmaps(namespace), label_selector="t=1")
    seen, listen = recorder()
    reflector.add_listener(listen)
    reflector.start(stop)
    assert reflector.synced.wait(10)
    create(kube, namespace, "before-restart")
    wait_until(lambda: ("ADDED", "before-restart") in seen)
    restart_apiserver(down_seconds=1.0)
    create(kube, namespace, "after-restart")
    wait_until(lambda: ("ADDED", "after-restart") in seen, timeout=60)
    assert seen.count(("ADDED", "before-restart")) == 1
