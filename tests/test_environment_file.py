"""Reading an Environment, one reader for both halves: `--environment FILE` (which may
share its file with the Project), API objects, and what a plan needs of a hand-written file."""

from __future__ import annotations

from pathlib import Path

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.documents import load_documents
from devjobs.resolver.environment import from_object, load_file, parse_environment

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
    # A missing field's place is its parent's value: the Environment's spec mapping.
    lines = path.read_text().splitlines()
    spec = next(
        n for n, text in enumerate(lines, 1) if n > len(project.splitlines()) and text == "spec:"
    )
    assert str(error.value) == f"{path}:{spec + 1}:3: spec.type: required field is missing"


def api_object(**spec: object) -> dict[str, object]:
    return {
        "apiVersion": "catalyst.catalyst.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "pr-7", "namespace": "shop-pr-7", "uid": "u-7", "generation": 3},
        "spec": {"projectRef": {"name": "shop"}, "type": "development", **spec},
    }


def test_an_api_object_is_read_by_the_same_reader_with_its_name_as_the_place() -> None:
    sources = [{"name": "web", "commitSha": "HEAD", "branch": "main", "prNumber": 7}]
    environment = from_object(api_object(sources=sources))
    assert (environment.ref, environment.uid, environment.generation) == (
        "shop-pr-7/pr-7",
        "u-7",
        3,
    )
    web = environment.source("web")
    assert web is not None and web.pr_number == 7
    # Catalyst writes "HEAD" for "no commit yet": the branch is what runs.
    assert (web.pinned_commit, web.revision) == (None, "main")
    twice = api_object(sources=[{"name": "web"}, {"name": "web"}])
    with pytest.raises(DevjobsError) as error:
        from_object(twice)
    assert str(error.value) == (
        "Environment shop-pr-7/pr-7: spec.sources[1].name: duplicate source 'web'"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metadata": {"name": "pr-7"}}, "metadata.namespace: required field is missing"),
        ({"spec": {"projectRef": {"name": "shop"}}}, "spec.type: required field is missing"),
        ({"spec": {"type": "development"}}, "spec.projectRef: required field is missing"),
        (
            {"spec": {"projectRef": {"name": "shop"}, "type": "x", "sources": [{"name": 3}]}},
            "spec.sources[0].name: must be a string, not a number",
        ),
    ],
)
def test_the_runner_needs_namespace_project_and_type(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(DevjobsError) as error:
        from_object({**api_object(), **change})
    assert str(error.value).endswith(message)


def test_a_plan_reads_only_the_pins_of_a_hand_written_file(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(
        "apiVersion: catalyst.catalyst.dev/v1alpha1\nkind: Environment\n"
        "metadata: {name: pr-7}\nspec:\n  sources:\n  - {name: web, commitSha: abc1234}\n"
    )
    with pytest.raises(DevjobsError, match=r"env.yaml:5:3: spec.projectRef: required field"):
        load_file(path)
    [document] = load_documents(path)
    pins = parse_environment(document, pins_only=True)
    web = pins.source("web")
    assert web is not None and web.revision == "abc1234"
    assert (pins.namespace, pins.project, pins.type) == ("", "", "")
