"""`--environment FILE` for render: the Environment may share its file with the Project."""

from __future__ import annotations

from pathlib import Path

import pytest

from devjobs.errors import DevjobsError
from devjobs.runner.environment import load_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "project.yaml"


def test_the_environment_is_found_among_other_documents() -> None:
    environment = load_file(EXAMPLE)
    assert (environment.namespace, environment.name, environment.project) == (
        "example-pr-42",
        "pr-42",
        "example",
    )


def test_a_file_without_exactly_one_environment_is_refused(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    project_only = tmp_path / "project.yaml"
    project_only.write_text(text.split("\n---\n")[0])
    with pytest.raises(DevjobsError, match="expected one Environment, found 0"):
        load_file(project_only)
    twice = tmp_path / "twice.yaml"
    environment = text.split("\n---\n")[1]
    twice.write_text(f"{environment}\n---\n{environment}")
    with pytest.raises(DevjobsError, match="expected one Environment, found 2"):
        load_file(twice)


def test_an_invalid_environment_names_its_place(tmp_path: Path) -> None:
    broken = tmp_path / "env.yaml"
    broken.write_text("apiVersion: catalyst.catalyst.dev/v1alpha1\nkind: Environment\nspec: [\n")
    with pytest.raises(DevjobsError) as error:
        load_file(broken)
    assert str(error.value).startswith(f"{broken}:4:1: invalid YAML")


def test_a_missing_field_names_the_file_the_document_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    project, environment = EXAMPLE.read_text().split("\n---\n")
    path.write_text(f"{project}\n---\n{environment.replace('  type: development', '')}")
    with pytest.raises(DevjobsError) as error:
        load_file(path)
    line = len(project.splitlines()) + 2
    assert str(error.value) == f"{path}:{line}:1: Environment.spec.type: is required"
