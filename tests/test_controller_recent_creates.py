"""The controller's shell does not apply a Job twice while its informer lags: a created
Job is remembered (name + spec hash) until the informer shows it, or for a while."""

from __future__ import annotations

from typing import Any

from devjobs.controller import act
from devjobs.controller.actions import CreateJob
from devjobs.kube.client import Kube
from devjobs.kube.vocabulary import ANNOTATION_SPEC_HASH
from devjobs.resolver import environment as envmod
from tests.catalyst import TEST_IMAGE, environment


def create(name: str = "pr-1-web-test-abc", spec_hash: str = "abc", ns: str = "ns") -> CreateJob:
    return CreateJob(
        name,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": ns,
                         "annotations": {ANNOTATION_SPEC_HASH: spec_hash}},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "job", "image": TEST_IMAGE}],
                    }
                }
            },
        },
    )  # fmt: skip


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_created_job_is_held_until_the_informer_shows_it() -> None:
    recent = act.RecentCreates(clock=Clock())
    recent.created("ns", create())
    assert recent.holds("ns", create())
    assert not recent.holds("other", create())
    recent.seen("ns", ["pr-1-web-test-abc"])
    assert not recent.holds("ns", create())
    assert len(recent) == 0


def test_another_spec_under_the_same_name_is_not_held() -> None:
    recent = act.RecentCreates(clock=Clock())
    recent.created("ns", create(spec_hash="abc"))
    assert not recent.holds("ns", create(spec_hash="def"))


def test_a_job_never_seen_is_created_again_after_the_ttl() -> None:
    clock = Clock()
    recent = act.RecentCreates(ttl=60, clock=clock)
    recent.created("ns", create())
    clock.now += 59
    assert recent.holds("ns", create())
    clock.now += 2
    assert not recent.holds("ns", create())
    assert len(recent) == 0  # forgotten, not kept forever


def test_executing_the_same_create_twice_applies_once(kube_client: Any, namespace: str) -> None:
    kube = Kube(kube_client)
    env = envmod.from_object(environment("pr-1", namespace, project="app", uid="u-1"))
    counters = act.Counters()
    recent = act.RecentCreates()
    action = create(ns=namespace)
    act.execute(kube, env, [action], counters, recent=recent)
    act.execute(kube, env, [action], counters, recent=recent)  # the informer has not caught up
    assert counters.writes == {"job-create": 1}
    assert kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{action.name}") is not None
    recent.seen(namespace, [action.name])
    act.execute(kube, env, [action], counters, recent=recent)  # decided again once seen
    assert counters.writes == {"job-create": 2}
