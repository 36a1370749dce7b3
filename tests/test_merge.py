"""The merge of devcontainer jobs with a Project's jobs: the CR overrides by name."""

from __future__ import annotations

from typing import Any

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.jobspec import JobSpec
from devjobs.resolver.merge import ProjectJob, SourceDefaults, merge_source
from devjobs.resolver.models import JobConfig, Origin, RunAs, Trigger

DC = "/.devcontainer/devcontainer.json"


def dc_job(name: str, **fields: Any) -> JobConfig:
    values: dict[str, Any] = {
        "name": name,
        "source": "app",
        "trigger": Trigger.MANUAL,
        "command": ["/bin/sh", "-c", f"run {name}"],
        "image": "node:22",
        "working_dir": "/workspaces/app",
        "env": {"A": "1"},
        "setup": ["post-create"],
        "origins": [Origin(kind="devcontainer", file=DC, pointer=f"/tasks/{name}")],
    }
    values.update(fields)
    return JobConfig(**values)


SETUP = dc_job(
    "post-create",
    trigger=Trigger.PRE_DEPLOY,
    run_as=RunAs.INIT_CONTAINER,
    setup=[],
    origins=[Origin(kind="devcontainer", file=DC, pointer="/postCreateCommand")],
)
DEFAULTS = SourceDefaults("/workspaces/app", ["post-create"], "node:22")


def cr(index: int, **fields: object) -> ProjectJob:
    pointer = f"/spec/sources/0/jobs/{index}"
    return ProjectJob(
        spec=JobSpec.read(fields),
        origin=Origin(kind="project", file="project.yaml", pointer=pointer),
        where=lambda field: f"project.yaml:{index + 10}:7: {pointer}/{field}",
    )


def test_project_job_overrides_only_the_fields_it_sets() -> None:
    merged = merge_source(
        "app",
        [SETUP, dc_job("test")],
        [cr(0, name="test", trigger="PostDeploy", env={"B": "2"})],
        DEFAULTS,
    )
    test = merged.jobs[1]
    assert test.trigger == Trigger.POST_DEPLOY
    assert test.command == ["/bin/sh", "-c", "run test"]
    assert test.image == "node:22"
    assert test.env == {"A": "1", "B": "2"}
    assert test.setup == ["post-create"]
    assert [o.kind for o in test.origins] == ["devcontainer", "project"]


def test_disabled_project_job_removes_the_devcontainer_job_and_says_so() -> None:
    merged = merge_source(
        "app", [SETUP, dc_job("test")], [cr(0, name="test", enabled=False)], DEFAULTS
    )
    assert [job.name for job in merged.jobs] == ["post-create"]
    assert merged.skipped[0].pointer == "/spec/sources/0/jobs/0"


def test_new_project_jobs_come_after_devcontainer_jobs_in_project_order() -> None:
    merged = merge_source(
        "app",
        [SETUP, dc_job("test")],
        [cr(0, name="zeta", command=["z"]), cr(1, name="alpha", command=["a"])],
        DEFAULTS,
    )
    assert [job.name for job in merged.jobs] == ["post-create", "test", "zeta", "alpha"]
    alpha = merged.jobs[3]
    assert alpha.image is None  # the build image
    assert alpha.setup == []
    assert alpha.working_dir == "/workspaces/app"
    assert alpha.trigger == Trigger.MANUAL


def test_project_only_job_runs_setup_steps_only_when_asked() -> None:
    merged = merge_source("app", [SETUP], [cr(0, name="x", command=["x"], setup=True)], DEFAULTS)
    assert merged.jobs[1].setup == ["post-create"]


def test_overriding_the_image_drops_the_setup_steps() -> None:
    merged = merge_source("app", [dc_job("test")], [cr(0, name="test", image="alpine:3")], DEFAULTS)
    assert merged.jobs[0].setup == []
    assert merged.jobs[0].image == "alpine:3"


def test_project_command_string_and_object_forms_follow_devcontainer_semantics() -> None:
    merged = merge_source(
        "app",
        [],
        [cr(0, name="s", command="echo hi"), cr(1, name="p", command={"a": "x", "b": ["y", "1"]})],
        DEFAULTS,
    )
    assert merged.jobs[0].command == ["/bin/sh", "-c", "echo hi"]
    assert merged.jobs[1].parallel == {"a": ["/bin/sh", "-c", "x"], "b": ["y", "1"]}
    assert merged.jobs[1].command is None


def test_duplicate_names_in_one_source_are_an_error_at_the_second() -> None:
    with pytest.raises(DevjobsError) as error:
        merge_source(
            "app", [], [cr(0, name="a", command=["x"]), cr(1, name="a", command=["y"])], DEFAULTS
        )
    assert error.value.place == "project.yaml:11:7: /spec/sources/0/jobs/1/name"
    assert "duplicate job name 'a'" in error.value.message


def test_names_that_normalise_to_the_same_job_are_duplicates() -> None:
    with pytest.raises(DevjobsError, match="duplicate"):
        merge_source(
            "app",
            [],
            [cr(0, name="unit_tests", command=["x"]), cr(1, name="Unit Tests", command=["y"])],
            DEFAULTS,
        )


def test_a_name_that_can_be_normalised_is_with_a_warning() -> None:
    merged = merge_source("app", [], [cr(0, name="Unit_Tests", command=["x"])], DEFAULTS)
    assert merged.jobs[0].name == "unit-tests"
    assert "normalised to 'unit-tests'" in merged.warnings[0]


def test_init_container_is_refused_outside_pre_deploy() -> None:
    with pytest.raises(DevjobsError) as error:
        merge_source(
            "app",
            [],
            [cr(0, name="m", command=["x"], runAs="InitContainer", trigger="PostDeploy")],
            DEFAULTS,
        )
    assert error.value.place.endswith("/spec/sources/0/jobs/0/runAs")


def test_moving_a_setup_step_to_another_trigger_is_refused_with_the_project_place() -> None:
    with pytest.raises(DevjobsError, match="only possible at PreDeploy"):
        merge_source("app", [SETUP], [cr(0, name="post-create", trigger="PostBuild")], DEFAULTS)


def test_new_job_without_command_is_an_error() -> None:
    with pytest.raises(DevjobsError, match="needs a command") as error:
        merge_source("app", [], [cr(0, name="x")], DEFAULTS)
    assert error.value.place.endswith("/jobs/0/command")
