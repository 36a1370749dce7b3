"""Which jobs a local run runs and in what order: pinned on plans built from the models."""

from __future__ import annotations

from typing import Any

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.models import JobConfig, JobPlan, RunAs, Trigger
from devjobs.runner.local.results import JobResult, JobStatus, exit_code
from devjobs.runner.local.schedule import build_schedule, parse_trigger


def job(name: str, trigger: Trigger, source: str = "app", **extra: Any) -> JobConfig:
    return JobConfig(
        name=name,
        source=source,
        trigger=trigger,
        command=["true"],
        working_dir="/workspaces/app",
        **extra,
    )


PLAN = JobPlan(
    jobs=[
        job("on-create", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER),
        job("deploy-check", Trigger.POST_DEPLOY, setup=["on-create"]),
        job("lint", Trigger.POST_BUILD, setup=["on-create"]),
        job("migrate", Trigger.PRE_DEPLOY),
        job("release", Trigger.MANUAL),
        job("lint", Trigger.POST_BUILD, source="web"),
    ]
)


def keys(stages: object) -> list[tuple[str, list[str]]]:
    return [(s.trigger.value, [u.job.key for u in s.units]) for s in stages]  # type: ignore[attr-defined]


def test_all_automatic_points_run_in_lifecycle_order_and_manual_jobs_do_not() -> None:
    assert keys(build_schedule(PLAN)) == [
        ("PostBuild", ["app/lint", "web/lint"]),
        ("PreDeploy", ["app/on-create", "app/migrate"]),
        ("PostDeploy", ["app/deploy-check"]),
    ]


def test_each_job_carries_its_setup_jobs_in_the_order_named() -> None:
    stages = build_schedule(PLAN)
    lint = stages[0].units[0]
    assert [s.name for s in lint.setup] == ["on-create"]
    assert stages[0].units[1].setup == ()


def test_a_trigger_runs_only_that_point() -> None:
    assert keys(build_schedule(PLAN, trigger=Trigger.PRE_DEPLOY)) == [
        ("PreDeploy", ["app/on-create", "app/migrate"])
    ]
    assert keys(build_schedule(PLAN, trigger=Trigger.MANUAL)) == [("Manual", ["app/release"])]


def test_named_jobs_run_alone_in_lifecycle_order_manual_last() -> None:
    stages = build_schedule(PLAN, names=["release", "app/deploy-check", "web/lint"])
    assert keys(stages) == [
        ("PostBuild", ["web/lint"]),
        ("PostDeploy", ["app/deploy-check"]),
        ("Manual", ["app/release"]),
    ]
    assert [s.name for s in stages[1].units[0].setup] == ["on-create"]


def test_an_ambiguous_name_asks_for_the_source() -> None:
    with pytest.raises(DevjobsError, match="ambiguous; use one of: app/lint, web/lint"):
        build_schedule(PLAN, names=["lint"])


def test_an_unknown_name_lists_the_jobs() -> None:
    with pytest.raises(DevjobsError, match="no such job in the plan") as error:
        build_schedule(PLAN, names=["nope"])
    assert error.value.place == "nope"


def test_trigger_and_names_together_are_refused() -> None:
    with pytest.raises(DevjobsError, match="either --trigger or job names"):
        build_schedule(PLAN, trigger=Trigger.POST_BUILD, names=["release"])


def test_a_missing_setup_job_is_an_input_error() -> None:
    plan = JobPlan(jobs=[job("test", Trigger.POST_BUILD, setup=["post-create"])])
    with pytest.raises(DevjobsError, match="setup job 'post-create' is not a job of source 'app'"):
        build_schedule(plan)


def test_points_with_no_jobs_are_left_out() -> None:
    assert build_schedule(JobPlan(jobs=[job("x", Trigger.MANUAL)])) == ()


@pytest.mark.parametrize("text", ["PostBuild", "postbuild", "post-build", "POST_BUILD"])
def test_triggers_are_read_case_insensitively(text: str) -> None:
    assert parse_trigger(text) == Trigger.POST_BUILD


def test_an_unknown_trigger_lists_the_choices() -> None:
    with pytest.raises(DevjobsError, match="PostBuild, PreDeploy, PostDeploy, Manual"):
        parse_trigger("later")


def result(status: JobStatus) -> JobResult:
    return JobResult(source="app", name="x", trigger=Trigger.POST_BUILD, status=status)


@pytest.mark.parametrize(
    ("statuses", "interrupted", "code"),
    [
        ([JobStatus.SUCCEEDED, JobStatus.SUCCEEDED], False, 0),
        ([], False, 0),
        ([JobStatus.SUCCEEDED, JobStatus.FAILED], False, 1),
        ([JobStatus.CANCELLED], False, 1),
        ([JobStatus.SKIPPED], False, 1),
        ([JobStatus.SUCCEEDED], True, 130),
    ],
)
def test_exit_code_is_130_after_ctrl_c_else_1_unless_every_job_succeeded(
    statuses: list[JobStatus], interrupted: bool, code: int
) -> None:
    assert exit_code([result(s) for s in statuses], interrupted=interrupted) == code
