"""schemas/ is generated from the models; these tests fail when the two drift."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from devjobs.resolver.models import JobConfig, JobPlan, Origin, Trigger
from devjobs.schemas import CATALYST_PROJECT_CRD, SCHEMAS_DIR, render_all


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    if not CATALYST_PROJECT_CRD.exists():
        pytest.fail(f"Catalyst's Project CRD is missing at {CATALYST_PROJECT_CRD}")
    return render_all()


def test_committed_schemas_match_the_models(generated: dict[str, str]) -> None:
    for relative, content in generated.items():
        committed = (SCHEMAS_DIR / relative).read_text(encoding="utf-8")
        assert committed == content, f"schemas/{relative} is stale: run python -m devjobs.schemas"


def test_a_plan_validates_against_the_jobplan_schema() -> None:
    schema = json.loads((SCHEMAS_DIR / "jobplan.schema.json").read_text())
    origin = Origin(kind="devcontainer", file="devcontainer.json", pointer="/tasks/t")
    plan = JobPlan(
        jobs=[
            JobConfig(
                name="t",
                source="a",
                trigger=Trigger.MANUAL,
                command=["x"],
                working_dir="/w",
                origins=[origin],
            ),
            JobConfig(
                name="p",
                source="a",
                trigger=Trigger.MANUAL,
                parallel={"k": ["y"]},
                working_dir="/w",
            ),
        ]
    )
    jsonschema.validate(plan.to_wire(), schema)
    broken = plan.to_wire()
    broken["jobs"][0]["parallel"] = {"k": ["y"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_customizations_schema_accepts_a_real_example_and_rejects_a_typo() -> None:
    schema = json.loads((SCHEMAS_DIR / "devcontainer-customizations.schema.json").read_text())
    good = {
        "triggers": {"test": "PostDeploy"},
        "jobs": {
            "migrate": {
                "command": ["rake", "db:migrate"],
                "trigger": "PreDeploy",
                "runAs": "InitContainer",
            }
        },
    }
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"jobs": {"m": {"comand": ["x"]}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"triggers": {"test": "OnCommit"}}, schema)


def test_project_crd_is_catalysts_plus_jobs_and_devcontainer() -> None:
    ours = yaml.safe_load((SCHEMAS_DIR / "crds/projects.catalyst.catalyst.dev.yaml").read_text())
    theirs = yaml.safe_load(CATALYST_PROJECT_CRD.read_text())
    assert ours["metadata"]["name"] == theirs["metadata"]["name"]
    source = ours["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["sources"]["items"]
    assert set(source["properties"]) == {"name", "repositoryUrl", "branch", "jobs", "devcontainer"}
    assert source["properties"]["jobs"]["items"]["required"] == ["name"]
    text = json.dumps(source)
    assert "$ref" not in text and "anyOf" not in text
