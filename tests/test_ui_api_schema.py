"""`schemas/ui-api.schema.json` describes what the API answers: the view models'
documents (the API returns them as they are) validate against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from devjobs.ui import views
from tests.test_ui_views import NEW, NOW, kube_job, pod, snapshot, the_plan

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "ui-api.schema.json").read_text())


def validate(document: Any, definition: str) -> None:
    schema = {**SCHEMA, "$ref": f"#/$defs/{definition}"}
    schema.pop("oneOf")
    jsonschema.Draft202012Validator(schema).validate(document)


def test_the_api_documents_match_the_published_schema() -> None:
    job = kube_job("t-new", "app/test", NEW, done="Failed")
    failed = {"terminated": {"exitCode": 2, "reason": "Error"}}
    snap = snapshot([job], [pod("t-new", "test", {"terminated": {"exitCode": 0}}, failed)],
                    plan=the_plan())  # fmt: skip
    rows = views.job_rows(snap, NOW)
    summary = views.environment_summary(snap, rows, can_run=True)
    validate({"environments": [summary]}, "EnvironmentList")
    validate({"environment": summary, "jobs": rows}, "EnvironmentJobs")
    detail = views.job_detail(snap, "app/test", NOW)
    assert detail is not None
    detail |= {"canRun": True, "environment": {"namespace": "team-a", "name": "pr-1"}}
    validate(detail, "JobDetail")
    validate({"user": "you", "csrfToken": "x"}, "Session")
    validate({"requested": ["app/lint"]}, "RunRequested")
