"""Reading Project and Environment files: Catalyst's shape is accepted as it is, and
every mistake is reported at `file:line:col: field.path`."""

from __future__ import annotations

from pathlib import Path

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.project import read_resources

CATALYST_PROJECT = """\
apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Project
metadata:
  name: shop
  namespace: catalyst-system
spec:
  githubInstallationId: "12345"
  resources:
    defaultQuota: {cpu: "2", memory: 4Gi}
  sources:
  - name: backend
    repositoryUrl: https://github.com/acme/backend.git
    branch: main
  - name: frontend
    repositoryUrl: https://github.com/acme/frontend.git
    branch: develop
  templates:
    development:
      sourceRef: backend
      type: helm
      path: charts/app
"""


def write(tmp_path: Path, text: str, name: str = "project.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_real_catalyst_project_without_devjobs_fields_is_accepted(tmp_path: Path) -> None:
    resources = read_resources(write(tmp_path, CATALYST_PROJECT), None)
    assert resources.project is not None
    assert [s.name for s in resources.project.sources] == ["backend", "frontend"]
    assert resources.project.sources[1].branch == "develop"
    assert resources.project.sources[0].jobs == []
    assert resources.environment is None


def test_the_project_may_be_json(tmp_path: Path) -> None:
    import json

    import yaml

    path = write(tmp_path, json.dumps(yaml.safe_load(CATALYST_PROJECT)), "project.json")
    resources = read_resources(path, None)
    assert resources.project is not None and resources.project.name == "shop"


def test_an_environment_in_the_same_file_or_its_own_file_is_read(tmp_path: Path) -> None:
    environment = """\
apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Environment
metadata: {name: pr-42, namespace: shop-pr-42}
spec:
  projectRef: {name: shop}
  type: development
  sources:
  - {name: backend, commitSha: 0123456789abcdef0123456789abcdef01234567, branch: feature}
"""
    both = read_resources(write(tmp_path, CATALYST_PROJECT + "---\n" + environment), None)
    assert both.environment is not None
    commit_sha = both.environment.sources[0].commit_sha
    assert commit_sha is not None and commit_sha.startswith("0123")
    separate = read_resources(
        write(tmp_path, CATALYST_PROJECT), write(tmp_path, environment, "env.yaml")
    )
    assert separate.environment is not None and separate.environment.name == "pr-42"


@pytest.mark.parametrize(
    ("addition", "place", "message"),
    [
        (
            "    jobs:\n    - name: t\n      trigger: Sometimes\n",
            ":16:16: spec.sources[0].jobs[0].trigger",
            "must be one of",
        ),
        (
            "    jobs:\n    - name: t\n      comand: [x]\n",
            ":16:7: spec.sources[0].jobs[0].comand",
            "unknown field",
        ),
        (
            "    jobs:\n    - trigger: Manual\n",
            ":15:7: spec.sources[0].jobs[0].name",
            "required field is missing",
        ),
        (
            "    jobs:\n    - name: t\n      retries: -1\n",
            ":16:16: spec.sources[0].jobs[0].retries",
            "greater than or equal to 0",
        ),
        (
            "    jobs:\n    - name: t\n      runAs: Sidecar\n",
            ":16:14: spec.sources[0].jobs[0].runAs",
            "must be one of",
        ),
        ("    jobs: {name: t}\n", ":14:11: spec.sources[0].jobs", "must be a list"),
        (
            "    jobs:\n    - name: t\n      env: {'BAD-NAME': x}\n",
            ":16:12: spec.sources[0].jobs[0].env",
            "not a valid environment variable name",
        ),
        (
            "    jobs:\n    - name: t\n      workingDir: src\n",
            ":16:19: spec.sources[0].jobs[0].workingDir",
            "must be an absolute path",
        ),
        (
            "    jobs:\n    - name: t\n      command: ''\n",
            ":16:16: spec.sources[0].jobs[0].command",
            "must not be empty",
        ),
        (
            "    devcontainer: {path: x, enable: false}\n",
            ":14:29: spec.sources[0].devcontainer.enable",
            "unknown field",
        ),
    ],
)
def test_invalid_project_jobs_are_reported_at_their_place(
    tmp_path: Path, addition: str, place: str, message: str
) -> None:
    lines = CATALYST_PROJECT.splitlines(keepends=True)
    text = "".join(lines[:13]) + addition + "".join(lines[13:])
    path = write(tmp_path, text)
    with pytest.raises(DevjobsError) as error:
        read_resources(path, None)
    assert str(error.value).startswith(f"{path}{place}: "), str(error.value)
    assert message in str(error.value)


def test_yaml_syntax_errors_name_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: Project\nspec: [unclosed\n")
    with pytest.raises(DevjobsError) as error:
        read_resources(path, None)
    assert str(error.value).startswith(f"{path}:3:1: invalid YAML")


def test_duplicate_keys_are_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        CATALYST_PROJECT.replace("    branch: main\n", "    branch: main\n    branch: dev\n"),
    )
    with pytest.raises(DevjobsError, match="duplicate key 'branch'"):
        read_resources(path, None)


def test_duplicate_source_names_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, CATALYST_PROJECT.replace("name: frontend", "name: backend"))
    with pytest.raises(DevjobsError, match=r"spec.sources\[1\].name: duplicate source name"):
        read_resources(path, None)


def test_a_file_without_a_project_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(DevjobsError, match="no catalyst.catalyst.dev/v1alpha1 Project"):
        read_resources(path, None)


def test_a_project_of_another_api_group_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path, CATALYST_PROJECT.replace("catalyst.catalyst.dev/v1alpha1", "example.com/v1")
    )
    with pytest.raises(DevjobsError, match=r":1:13: apiVersion: Project must have apiVersion"):
        read_resources(path, None)


def test_missing_and_oversized_files_are_clean_errors(tmp_path: Path) -> None:
    with pytest.raises(DevjobsError, match="no such file"):
        read_resources(tmp_path / "nope.yaml", None)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (5 * 1024 * 1024))
    with pytest.raises(DevjobsError, match="larger than"):
        read_resources(big, None)


def test_a_bad_namespace_or_missing_spec_is_an_error_at_its_place(tmp_path: Path) -> None:
    base = "apiVersion: catalyst.catalyst.dev/v1alpha1\nkind: Project\n"
    for text, expected in [
        (base + "metadata: {name: shop, namespace: 3}\nspec: {sources: []}\n",
         ":3:35: metadata.namespace: must be a string, not a number"),
        (base + "metadata: {name: shop}\n", ":1:1: spec: required field is missing"),
    ]:  # fmt: skip
        path = write(tmp_path, text)
        with pytest.raises(DevjobsError) as error:
            read_resources(path, None)
        assert str(error.value) == f"{path}{expected}"
