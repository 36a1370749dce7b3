"""The Jobs view's view models (pure): API JSON of an Environment, its Jobs, pods, log
tails and plan in; what the pages show out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from devjobs.resolver.models import JobPlan, Trigger
from devjobs.ui import views
from devjobs.ui.cluster import Snapshot
from tests.catalyst import environment, job_config, job_plan

NS = "team-a"
OLD, NEW = "a" * 40, "b" * 40
NOW = datetime(2024, 5, 1, 10, 5, tzinfo=UTC)


def kube_job(
    name: str,
    key: str,
    commit: str,
    *,
    done: str | None = None,
    created: str = "2024-05-01T10:00:00Z",
    trigger: str = "PostBuild",
) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2024-05-01T10:00:00Z"}
    if done == "Complete":
        status["conditions"] = [{"type": "Complete", "status": "True"}]
        status["completionTime"] = "2024-05-01T10:01:05Z"
    elif done == "Failed":
        status["conditions"] = [
            {
                "type": "Failed",
                "status": "True",
                "reason": "PodFailurePolicy",
                "lastTransitionTime": "2024-05-01T10:00:30Z",
            }
        ]
    source, job = key.split("/")
    return {
        "metadata": {
            "name": name, "namespace": NS, "creationTimestamp": created,
            "labels": {"devjobs.dev/environment": "pr-1", "devjobs.dev/source": source,
                       "devjobs.dev/job": job, "devjobs.dev/trigger": trigger},
            "annotations": {"devjobs.dev/job-key": key, "devjobs.dev/commit": commit,
                            "devjobs.dev/containers": job},
        },
        "spec": {"template": {"spec": {"initContainers": [{"name": "devjobs-clone"}],
                                       "containers": [{"name": job}]}}},
        "status": status,
    }  # fmt: skip


def pod(job: str, container: str, init: dict[str, Any], main: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{job}-x", "namespace": NS,
                     "creationTimestamp": "2024-05-01T10:00:01Z",
                     "labels": {"batch.kubernetes.io/job-name": job,
                                "devjobs.dev/environment": "pr-1"}},
        "spec": {"initContainers": [{"name": "devjobs-clone"}],
                 "containers": [{"name": container}]},
        "status": {"phase": "Failed",
                   "initContainerStatuses": [{"name": "devjobs-clone", "state": init}],
                   "containerStatuses": [{"name": container, "state": main}]},
    }  # fmt: skip


def the_plan() -> JobPlan:
    return job_plan(
        {"app": "https://github.com/acme/shop"},
        job_config("test", Trigger.POST_BUILD, "app", "true", "busybox", "/w"),
        job_config("lint", Trigger.MANUAL, "app", "true", "busybox", "/w"),
    )


def snapshot(
    jobs: list[dict[str, Any]],
    pods: Sequence[dict[str, Any]] = (),
    conditions: Sequence[dict[str, Any]] = (),
    plan: JobPlan | None = None,
    tails: Sequence[dict[str, Any]] = (),
) -> Snapshot:
    status = {"phase": "Ready", "conditions": list(conditions)}
    env = environment("pr-1", NS, {"app": NEW}, status=status)
    return Snapshot(env, jobs, list(pods), list(tails), plan, "")


def test_each_job_shows_its_latest_run_at_the_current_commit_and_earlier_commits_runs() -> None:
    jobs = [
        kube_job("t-old", "app/test", OLD, done="Failed"),
        kube_job("t-new", "app/test", NEW, done="Complete", created="2024-05-01T10:02:00Z"),
    ]
    (row, lint) = views.job_rows(snapshot(jobs, plan=the_plan()), NOW)
    assert (row["key"], row["state"], row["jobName"], row["exitCode"]) == (
        "app/test",
        "Succeeded",
        "t-new",
        0,
    )
    assert row["duration"] == "1m05s" and row["trigger"] == "PostBuild"
    assert [(r["jobName"], r["state"], r["commit"]) for r in row["earlierRuns"]] == [
        ("t-old", "Failed", OLD)
    ]
    assert row["origin"] == ""  # the test plan has no origins
    assert (lint["state"], lint["reason"], lint["runLabel"], lint["runnable"]) == (
        "Waiting",
        "Manual",
        "Run",
        True,
    )


def test_a_job_without_a_job_object_is_shown_as_its_condition_says() -> None:
    blocked = {
        "type": "Job.app.migrate",
        "status": "False",
        "reason": "Blocked",
        "message": "devjobs-clone failed\nmore",
    }
    (row,) = views.job_rows(snapshot([], conditions=[blocked]), NOW)
    assert (row["key"], row["state"], row["message"]) == (
        "app/migrate",
        "Blocked",
        "devjobs-clone failed",
    )
    assert views.state_from_condition({"status": "True", "reason": "Succeeded"}) == "Succeeded"
    assert views.state_from_condition({"status": "Unknown", "reason": "Running"}) == "Running"
    assert views.state_from_condition({"status": "Unknown", "reason": "Waiting"}) == "Waiting"


def test_running_and_pending_jobs_offer_no_run_and_finished_ones_a_rerun() -> None:
    running = kube_job("t-new", "app/test", NEW)
    (row, _) = views.job_rows(snapshot([running], plan=the_plan()), NOW)
    assert row["state"] == "Pending" and not row["runnable"]
    done = kube_job("t-new", "app/test", NEW, done="Complete")
    (row, _) = views.job_rows(snapshot([done], plan=the_plan()), NOW)
    assert row["runnable"] and row["runLabel"] == "Rerun"


def test_a_failed_clone_names_the_container_its_exit_code_and_the_reason_in_words() -> None:
    job = kube_job("t-new", "app/test", NEW, done="Failed")
    failed = {"terminated": {"exitCode": 128, "reason": "Error", "message": "repository not found",
                             "finishedAt": "2024-05-01T10:00:20Z"}}  # fmt: skip
    waiting = {"waiting": {"reason": "PodInitializing"}}
    detail = views.job_detail(
        snapshot([job], [pod("t-new", "test", failed, waiting)]), "app/test", NOW
    )
    assert detail is not None
    clone, main = detail["containers"]
    assert (clone["name"], clone["kind"], clone["state"], clone["exitCode"]) == (
        "devjobs-clone",
        "clone",
        "Failed",
        128,
    )
    assert clone["words"] == "exited with code 128: repository not found"
    assert (main["kind"], main["state"]) == ("job", "Waiting")
    assert "waiting for the steps before it" in main["words"]
    assert detail["logSource"] == "live" and detail["pod"] == "t-new-x"
    assert detail["state"] == "Failed" and detail["exitCode"] == 128


def test_an_out_of_memory_kill_is_said_in_words() -> None:
    state, code, words = views.container_words(
        {"name": "x", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
    )
    assert (state, code) == ("Failed", 137)
    assert words == "exited with code 137: OOMKilled (killed: it used more memory than its limit)"
    assert views.container_words(None) == ("Waiting", None, "not started")


def test_after_the_pod_is_gone_the_log_is_the_record_devjobs_kept() -> None:
    job = kube_job("t-new", "app/test", NEW, done="Complete")
    tail = {"metadata": {"name": "devjobs-log-x", "namespace": NS,
                         "labels": {"devjobs.dev/environment": "pr-1"},
                         "annotations": {"devjobs.dev/job-key": "app/test"}},
            "data": {"test.log": "hello\n"}}  # fmt: skip
    detail = views.job_detail(snapshot([job], tails=[tail]), "app/test", NOW)
    assert detail is not None
    assert detail["logSource"] == "retained"
    assert detail["retained"] == [{"container": "test", "text": "hello\n"}]
    assert detail["exitCode"] == 0
    assert [c["words"] for c in detail["containers"]] == ["its pod is gone"] * 2


def test_the_environment_summary_counts_jobs_by_state() -> None:
    aggregate = {"type": "JobsSucceeded", "status": "False", "reason": "Failed", "message": "x"}
    snap = snapshot([kube_job("t-new", "app/test", NEW, done="Failed")], conditions=[aggregate],
                    plan=the_plan())  # fmt: skip
    rows = views.job_rows(snap, NOW)
    summary = views.environment_summary(snap, rows, can_run=False)
    assert summary["counts"] == {"Waiting": 1, "Failed": 1}
    assert summary["jobsSucceeded"]["reason"] == "Failed"
    assert summary["commits"] == [{"source": "app", "commit": NEW}]
    assert (summary["phase"], summary["canRun"]) == ("Ready", False)


def test_durations_read_as_people_say_them() -> None:
    start = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert views.duration(None, None, NOW) == ""
    assert views.duration(start, start.replace(second=42), NOW) == "42s"
    assert views.duration(start, None, NOW) == "5m00s"
    assert views.duration(start, start.replace(hour=12, minute=3), NOW) == "2h03m"
