"""Conformance with the reference implementation (@devcontainers/cli 0.89.0) on the shared
corpus of real-world devcontainer.json files: every config plans, and the setup jobs'
commands and working directory are what the reference would run (target local), and
the plan document of each is valid against `schemas/jobplan.schema.json`.

The corpus lives beside the repository clone (`../shared/corpus/devcontainer`), or
where DEVJOBS_CORPUS points. See its README for how the expectations were recorded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.devcontainer import Devcontainer, read_devcontainer
from devjobs.resolver.lifecycle import SETUP_COMMANDS
from devjobs.resolver.models import JobPlan, SourceInfo

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("DEVJOBS_CORPUS", REPO.parent / "shared" / "corpus" / "devcontainer"))
CASES = sorted(path.name for path in (CORPUS / "cases").iterdir()) if CORPUS.is_dir() else []
PLAN_SCHEMA = jsonschema.Draft202012Validator(
    json.loads((REPO / "schemas" / "jobplan.schema.json").read_text())
)


def test_corpus_is_present() -> None:
    assert len(CASES) > 200, f"conformance corpus missing or incomplete at {CORPUS}"


def _workspace(case: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the case folder, keeping its name, with @@CASE_DIR@@ filled in."""
    workspace = tmp_path_factory.mktemp("corpus") / case
    shutil.copytree(CORPUS / "cases" / case, workspace, symlinks=True)
    for path in workspace.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if b"@@CASE_DIR@@" in data:
                path.chmod(0o644)
                path.write_bytes(data.replace(b"@@CASE_DIR@@", str(workspace).encode()))
    return workspace


def _expected(case: str, workspace: Path) -> dict[str, Any]:
    text = (CORPUS / "expected" / f"{case}.json").read_text()
    result: dict[str, Any] = json.loads(text.replace("@@CASE_DIR@@", str(workspace)))
    return result


def _as_job_command(written: Any) -> dict[str, Any] | None:
    """The reference's command as devjobs runs it; None when the reference skips it."""
    if isinstance(written, str):
        return {"command": ["/bin/sh", "-c", written]} if written.strip() else None
    if isinstance(written, list):
        return {"command": written} if written else None
    if isinstance(written, dict) and written:
        return {
            "parallel": {
                name: ["/bin/sh", "-c", entry] if isinstance(entry, str) else entry
                for name, entry in written.items()
            }
        }
    return None


def _assert_same_setup(ours: Devcontainer, reference: dict[str, Any]) -> None:
    configuration = reference["configuration"]
    expected = {}
    for key, name in SETUP_COMMANDS:
        command = _as_job_command(configuration.get(key))
        if command is not None:
            expected[name] = command
    setup = {
        job.name: ({"command": job.command} if job.command else {"parallel": job.parallel})
        for job in ours.jobs
        if job.name in dict((name, key) for key, name in SETUP_COMMANDS)
    }
    assert setup == expected
    assert ours.working_dir == reference["workspace"]["workspaceFolder"]


def _assert_valid_plan(ours: Devcontainer) -> None:
    """The plan's models are dataclasses serialised by devjobs; the schema is pydantic's."""
    plan = JobPlan(
        sources=[SourceInfo(name="app", devcontainer_file=ours.file)],
        jobs=ours.jobs,
        skipped=ours.skipped,
        warnings=ours.warnings,
    )
    PLAN_SCHEMA.validate(json.loads(json.dumps(plan.to_wire())))


@pytest.mark.parametrize("case", CASES)
def test_case_plans_like_the_reference(case: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    workspace = _workspace(case, tmp_path_factory)
    expected = _expected(case, workspace)

    def read(config: str | None) -> Devcontainer | None:
        return read_devcontainer(
            workspace, source="app", basename=case, config=config, target="local", local_env={}
        )

    for config, reference in expected["configs"].items():
        ours = read(config)
        assert ours is not None
        assert ours.file == config
        _assert_valid_plan(ours)
        if reference["exitCode"] == 0:
            _assert_same_setup(ours, reference)

    discovered = expected["discovered"]
    if discovered["exitCode"] == 0:
        ours = read(None)
        assert ours is not None
        _assert_same_setup(ours, discovered)
    else:
        # The reference looks only at .devcontainer/devcontainer.json and
        # .devcontainer.json; devjobs also finds .devcontainer/<folder>/devcontainer.json
        # and, with several, asks for a choice instead of failing without a word.
        with pytest.raises(DevjobsError, match="several devcontainer configs"):
            read(None)
