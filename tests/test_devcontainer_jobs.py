"""What a devcontainer.json becomes: setup jobs, tasks, customizations.devjobs jobs,
skipped hooks, and a clean error at file:line:col for everything wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.devcontainer import Devcontainer, read_devcontainer
from devjobs.resolver.models import Origin, RunAs, Trigger

CONFIG = ".devcontainer/devcontainer.json"


def checkout(tmp_path: Path, config: dict[str, Any] | str, **files: str) -> Path:
    root = tmp_path / "app"
    (root / ".devcontainer").mkdir(parents=True)
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    (root / CONFIG).write_text(text)
    for name, content in files.items():
        (root / ".devcontainer" / name).write_text(content)
    return root


def read(root: Path, **options: Any) -> Devcontainer:
    result = read_devcontainer(root, source="app", basename="app", **options)
    assert result is not None
    return result


def error(root: Path, **options: Any) -> str:
    with pytest.raises(DevjobsError) as caught:
        read_devcontainer(root, source="app", basename="app", **options)
    return str(caught.value)


def test_no_config_is_none(tmp_path: Path) -> None:
    assert read_devcontainer(tmp_path, source="app", basename="app") is None


def test_setup_commands_become_init_container_jobs_in_reference_order(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {
            "image": "python:3.12",
            "postCreateCommand": "pip install -e .",
            "onCreateCommand": ["make", "deps"],
            "updateContentCommand": {"a": "echo a", "b": ["echo", "b"]},
        },
    )
    result = read(root)
    assert [job.name for job in result.jobs] == ["on-create", "update-content", "post-create"]
    on_create, update_content, post_create = result.jobs
    assert on_create.command == ["make", "deps"]
    assert update_content.parallel == {"a": ["/bin/sh", "-c", "echo a"], "b": ["echo", "b"]}
    assert post_create.command == ["/bin/sh", "-c", "pip install -e ."]
    for job in result.jobs:
        assert job.run_as is RunAs.INIT_CONTAINER
        assert job.trigger is Trigger.PRE_DEPLOY
        assert job.image == "python:3.12"
        assert job.working_dir == "/workspaces/app"
        assert job.setup == []
    assert post_create.origins == [
        Origin(kind="devcontainer", file=CONFIG, pointer="/postCreateCommand")
    ]


def test_tasks_are_manual_jobs_that_run_the_setup_jobs_first(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {
            "onCreateCommand": "make",
            "postCreateCommand": "x",
            "tasks": {"test": "pytest", "lint": ["ruff", "check"]},
        },
    )
    result = read(root)
    test, lint = result.jobs[2:]
    assert (test.name, test.trigger, test.run_as) == ("test", Trigger.MANUAL, RunAs.JOB)
    assert test.setup == ["on-create", "post-create"]
    assert lint.command == ["ruff", "check"]
    assert test.origins[0].pointer == "/tasks/test"
    assert result.image is None  # no image: the environment's build image


def test_triggers_customization_sets_a_task_trigger(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {
            "tasks": {"migrate_db": "alembic upgrade head", "test": "pytest"},
            "customizations": {
                "devjobs": {"triggers": {"migrate_db": "PreDeploy", "test": "PostDeploy"}}
            },
        },
    )
    migrate, test = read(root).jobs
    assert (migrate.name, migrate.trigger) == ("migrate-db", Trigger.PRE_DEPLOY)
    assert test.trigger is Trigger.POST_DEPLOY


def test_a_bad_trigger_name_is_an_error_at_its_value(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        '{\n  "tasks": {"test": "pytest"},\n  "customizations": {"devjobs": {"triggers": {\n'
        '    "test": "OnPush"\n  }}}\n}',
    )
    assert error(root) == (
        f"{CONFIG}:4:13: unknown trigger 'OnPush' (expected one of PostBuild, PreDeploy, "
        "PostDeploy, Manual)"
    )


def test_a_trigger_for_a_task_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"customizations": {"devjobs": {"triggers": {"tset": "Manual"}}}})
    assert "no task named 'tset'" in error(root)


def test_customization_jobs_are_full_job_definitions(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {
            "image": "node:20",
            "containerEnv": {"A": "1"},
            "postCreateCommand": "npm ci",
            "customizations": {
                "devjobs": {
                    "jobs": {
                        "e2e": {
                            "command": "npm run e2e",
                            "trigger": "PostDeploy",
                            "env": {"B": "2"},
                            "timeoutSeconds": 600,
                            "retries": 2,
                        },
                        "scan": {"command": ["trivy", "fs", "."], "image": "aquasec/trivy"},
                        "quick": {"command": "true", "setup": False},
                        "off": {"command": "x", "enabled": False},
                    }
                }
            },
        },
    )
    result = read(root)
    e2e, scan, quick = result.jobs[1:]
    assert e2e.trigger is Trigger.POST_DEPLOY
    assert e2e.env == {"A": "1", "B": "2"}
    assert (e2e.timeout_seconds, e2e.retries, e2e.setup) == (600, 2, ["post-create"])
    assert e2e.origins[0].pointer == "/customizations/devjobs/jobs/e2e"
    assert (scan.image, scan.setup) == ("aquasec/trivy", [])
    assert (quick.image, quick.setup) == ("node:20", [])
    assert [(item.pointer, item.reason) for item in result.skipped] == [
        ("/customizations/devjobs/jobs/off", "enabled: false")
    ]


def test_a_bad_customization_job_is_an_error_at_the_offending_value(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        '{\n "customizations": {"devjobs": {"jobs": {\n  "e2e": {"command": "x",\n'
        '   "timeoutSeconds": -5}\n }}}\n}',
    )
    message = error(root)
    assert message.startswith(f"{CONFIG}:4:22: timeoutSeconds: ")
    assert "greater than 0" in message


def test_an_unknown_customization_job_field_is_an_error_at_the_job(tmp_path: Path) -> None:
    root = checkout(
        tmp_path, {"customizations": {"devjobs": {"jobs": {"a": {"command": "x", "comand": "y"}}}}}
    )
    assert "comand: unknown field" in error(root)


def test_a_customization_job_without_a_command_is_an_error(tmp_path: Path) -> None:
    root = checkout(
        tmp_path, {"customizations": {"devjobs": {"jobs": {"a": {"trigger": "Manual"}}}}}
    )
    assert "job 'a' has no command" in error(root)


def test_other_hooks_are_skipped_with_a_reason(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {"initializeCommand": "x", "postStartCommand": "y", "postAttachCommand": {"a": "z"}},
    )
    result = read(root)
    assert result.jobs == []
    assert [item.pointer for item in result.skipped] == [
        "/initializeCommand",
        "/postStartCommand",
        "/postAttachCommand",
    ]
    assert all(item.reason and item.source == "app" for item in result.skipped)


@pytest.mark.parametrize("empty", ["", "   ", [], {}, None, {"a": ""}])
def test_an_empty_command_is_skipped_not_a_crash(tmp_path: Path, empty: object) -> None:
    root = checkout(tmp_path, {"postCreateCommand": empty, "tasks": {"t": empty}})
    result = read(root)
    assert result.jobs == []
    assert [(item.pointer, item.reason) for item in result.skipped] == [
        ("/postCreateCommand", "empty command"),
        ("/tasks/t", "empty command"),
    ]


@pytest.mark.parametrize(
    ("command", "position"),
    [(5, "1:23"), (["echo", 1], "1:32"), ({"a": 1}, "1:29"), ([""], "1:24")],
)
def test_a_malformed_command_is_an_error_at_its_place(
    tmp_path: Path, command: object, position: str
) -> None:
    root = checkout(tmp_path, json.dumps({"postCreateCommand": command}))
    assert error(root).startswith(f"{CONFIG}:{position}:")


def test_task_names_are_normalised_with_a_warning(tmp_path: Path) -> None:
    result = read(checkout(tmp_path, {"tasks": {"Run Tests": "pytest"}}))
    assert result.jobs[0].name == "run-tests"
    assert any("normalised to 'run-tests'" in warning for warning in result.warnings)


def test_task_names_equal_after_normalisation_are_an_error_at_the_second(tmp_path: Path) -> None:
    root = checkout(tmp_path, '{"tasks": {\n "run_tests": "a",\n "Run Tests": "b"}}')
    assert error(root).startswith(
        f"{CONFIG}:3:15: job name 'run-tests' is already used at /tasks/run_tests"
    )


def test_a_task_may_not_take_a_setup_job_name(tmp_path: Path) -> None:
    assert "already used at /postCreateCommand" in error(
        checkout(tmp_path, {"tasks": {"post-create": "x"}})
    )


def test_a_document_that_is_not_an_object_is_an_error(tmp_path: Path) -> None:
    assert (
        error(checkout(tmp_path, "[1, 2]"))
        == f"{CONFIG}:1:1: a devcontainer config must be a JSON object"
    )


def test_invalid_utf8_is_an_error_at_its_position(tmp_path: Path) -> None:
    root = checkout(tmp_path, "{}")
    (root / CONFIG).write_bytes(b'{\n  "a": "\xff"}')
    assert error(root) == f"{CONFIG}:2:9: not valid UTF-8"


def test_a_too_large_config_is_refused(tmp_path: Path) -> None:
    root = checkout(tmp_path, "{}" + " " * (1024 * 1024))
    assert "larger than 1 MiB" in error(root)


def test_a_config_symlinked_out_of_the_checkout_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"image": "x"}')
    root = tmp_path / "app"
    root.mkdir()
    (root / ".devcontainer.json").symlink_to(secret)
    assert "resolves outside the checkout" in error(root)


def test_several_configs_need_a_choice(tmp_path: Path) -> None:
    root = tmp_path / "app"
    for name in ("a", "b"):
        (root / ".devcontainer" / name).mkdir(parents=True)
        (root / ".devcontainer" / name / "devcontainer.json").write_text(f'{{"image": "{name}"}}')
    assert "several devcontainer configs" in error(root)
    assert read(root, config=".devcontainer/b/devcontainer.json").image == "b"


def test_working_dir_env_and_image_come_from_the_config(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {
            "image": "img:${localEnv:TAG:latest}",
            "workspaceFolder": "/src/${localWorkspaceFolderBasename}",
            "containerEnv": {"A": "1", "B": "2", "C": "3"},
            "remoteEnv": {"B": "two", "C": None, "D": "${containerWorkspaceFolder}/bin"},
            "tasks": {"t": "echo"},
        },
    )
    result = read(root, target="local", local_env={"TAG": "1.0"})
    assert result.image == "img:1.0"
    assert result.working_dir == "/src/app"
    assert result.env == {"A": "1", "B": "two", "D": "/src/app/bin"}
    assert result.jobs[0].env == result.env


def test_container_env_references_are_left_out_of_the_env_with_a_warning(tmp_path: Path) -> None:
    result = read(checkout(tmp_path, {"remoteEnv": {"PATH": "${containerEnv:PATH}:/x"}}))
    assert result.env == {}
    assert any("PATH refers to ${containerEnv:...}" in warning for warning in result.warnings)


def test_cluster_target_never_reads_the_callers_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "secret")
    root = checkout(
        tmp_path, {"postCreateCommand": "login ${localEnv:TOKEN} ${localWorkspaceFolder}"}
    )
    result = read(root, target="cluster", local_env={"TOKEN": "also-secret"})
    assert result.jobs[0].command == ["/bin/sh", "-c", "login  /workspaces/app"]
    assert any("${localEnv:TOKEN} is not read for target cluster" in w for w in result.warnings)


def test_local_target_reads_the_environment_and_the_checkout_path(tmp_path: Path) -> None:
    root = checkout(
        tmp_path, {"postCreateCommand": "login ${localEnv:TOKEN} ${localWorkspaceFolder}"}
    )
    result = read(root, target="local", local_env={"TOKEN": "t"})
    assert result.jobs[0].command == ["/bin/sh", "-c", f"login t {root}"]


def test_compose_service_image_is_the_jobs_image(tmp_path: Path) -> None:
    compose = (
        "services:\n  app:\n    image: node:20\n    ports: !reset []\n  db:\n    image: postgres\n"
    )
    root = checkout(
        tmp_path,
        {"dockerComposeFile": "compose.yml", "service": "app", "tasks": {"t": "x"}},
        **{"compose.yml": compose},
    )
    result = read(root)
    assert result.image == "node:20"
    assert result.working_dir == "/"  # the reference's default for compose configs
    assert result.jobs[0].image == "node:20"


def test_compose_service_without_image_uses_the_build_image(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {"dockerComposeFile": ["a.yml", "b.yml"], "service": "app", "workspaceFolder": "/w"},
        **{
            "a.yml": "services:\n  app:\n    build: .\n",
            "b.yml": "services:\n  app:\n    command: x\n",
        },
    )
    assert read(root).image is None


def test_a_compose_file_outside_the_checkout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.yml").write_text("services: {app: {image: x}}")
    root = checkout(tmp_path, {"dockerComposeFile": "../../evil.yml", "service": "app"})
    assert "resolves outside the checkout" in error(root)


def test_invalid_compose_yaml_is_an_error_at_its_position(tmp_path: Path) -> None:
    root = checkout(
        tmp_path,
        {"dockerComposeFile": "c.yml", "service": "app"},
        **{"c.yml": "services:\n  app: [\n"},
    )
    assert error(root).startswith(".devcontainer/c.yml:3:1: invalid YAML")


def test_features_produce_a_warning(tmp_path: Path) -> None:
    result = read(checkout(tmp_path, {"features": {"ghcr.io/devcontainers/features/node:1": {}}}))
    assert any("cannot install features" in warning for warning in result.warnings)


def test_a_devcontainer_folder_symlinked_out_of_the_checkout_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "devcontainer.json").write_text('{"postCreateCommand": "x"}')
    root = tmp_path / "app"
    root.mkdir()
    (root / ".devcontainer").symlink_to(elsewhere)
    assert error(root).startswith(f"{CONFIG}: resolves outside the checkout")


BILLION_LAUGHS = (
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
)


@pytest.mark.parametrize(
    ("compose", "expected"),
    [
        ("services: " + "[" * 100_000 + "]" * 100_000, "invalid YAML: exceeded maximum nesting"),
        (BILLION_LAUGHS + "services: {app: {image: *i}}\n", "services.app.image must be a string"),
        ("services: !!python/object:os.system {app: 1}", "invalid YAML: could not determine"),
    ],
)
def test_hostile_compose_files_give_clean_errors(
    tmp_path: Path, compose: str, expected: str
) -> None:
    root = checkout(
        tmp_path, {"dockerComposeFile": "c.yml", "service": "app"}, **{"c.yml": compose}
    )
    assert expected in error(root)
