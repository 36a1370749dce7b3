"""What `devjobs plan` imports: start-up time is most of a plan's cost (bench/README.md),
so the heavy libraries load only when the input needs them (PyYAML for YAML files,
GitPython to fetch), and pydantic and the Kubernetes client never. Each case runs the CLI in a
fresh interpreter and lists the heavy top-level packages that ended up imported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

HEAVY = ("pydantic", "pydantic_core", "yaml", "git", "kubernetes", "jsonschema", "json5")

PROBE = """
import json, sys
from devjobs.cli import main
code = main(sys.argv[2:])
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def heavy_imports(*argv: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    heavy: list[str] = report["heavy"]
    return heavy


def workspace(tmp_path: Path, config: Mapping[str, object]) -> Path:
    (tmp_path / ".devcontainer").mkdir(parents=True)
    (tmp_path / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("output", ["json", "table"])
def test_plan_of_a_directory_imports_no_heavy_library(tmp_path: Path, output: str) -> None:
    config = {"image": "node:22", "postCreateCommand": "npm ci", "tasks": {"test": "npm test"}}
    source = workspace(tmp_path, config)
    assert heavy_imports("plan", "--source", f"app={source}", "-o", output) == []


def test_plan_with_devcontainer_jobs_imports_no_heavy_library(tmp_path: Path) -> None:
    config = {
        "image": "node:22",
        "customizations": {"devjobs": {"jobs": {"lint": {"command": ["npm", "run", "lint"]}}}},
    }
    source = workspace(tmp_path, config)
    assert heavy_imports("plan", "--source", f"app={source}", "-o", "json") == []


def test_plan_of_a_project_file_imports_only_the_yaml_reader(tmp_path: Path) -> None:
    source = workspace(tmp_path / "app", {"image": "node:22", "tasks": {"test": "npm test"}})
    project = tmp_path / "project.yaml"
    project.write_text(
        "apiVersion: catalyst.catalyst.dev/v1alpha1\nkind: Project\n"
        "metadata: {name: shop}\n"
        "spec:\n  sources:\n  - name: app\n    repositoryUrl: https://example.com/app.git\n"
        "    branch: main\n    jobs: [{name: lint, command: [make, lint]}]\n"
    )
    heavy = heavy_imports("plan", str(project), "--source", f"app={source}", "-o", "json")
    assert heavy == ["yaml"]
