"""The files in `schemas/`, generated from the models so they cannot drift.

- `jobplan.schema.json`: the `devjobs plan -o json` document (JobPlan, JobConfig).
- `devcontainer-customizations.schema.json`: `customizations.devjobs` in
  devcontainer.json, for editors.
- `crds/projects.catalyst.catalyst.dev.yaml`: Catalyst's Project CRD plus, per source,
  `jobs` and `devcontainer` (Catalyst's own CRD would prune them).

Regenerate with `python -m devjobs.schemas [CATALYST_PROJECT_CRD]`; a test compares.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from devjobs.kube.vocabulary import ANNOTATION_GENERATED_FROM
from devjobs.resolver import models
from devjobs.resolver.jobspec import JobSpec
from devjobs.resolver.models import JobPlan, Trigger, wire_name
from devjobs.resolver.project import DevcontainerRef

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO_ROOT / "schemas"
CATALYST_PROJECT_CRD = (
    REPO_ROOT.parent / "shared" / "fixtures" / "catalyst" / "catalyst.catalyst.dev_projects.yaml"
)


def attribute_docstrings(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body, whitespace-folded."""
    tree = ast.parse(inspect.getsource(cls).lstrip())
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for statement, following in zip(body, body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def _wire_names(cls: type) -> dict[str, str]:
    """Field name -> its name in the schema, for pydantic models and the plan's dataclasses."""
    if dataclasses.is_dataclass(cls):
        return {field.name: wire_name(field.name) for field in dataclasses.fields(cls)}
    assert issubclass(cls, BaseModel)
    return {name: field.alias or name for name, field in cls.model_fields.items()}


DESCRIBED: dict[str, type] = {
    cls.__name__: cls
    for cls in [*vars(models).values(), JobSpec, DevcontainerRef]
    if isinstance(cls, type) and (dataclasses.is_dataclass(cls) or issubclass(cls, BaseModel))
}
"""Classes whose attribute docstrings become property descriptions, by schema title."""


def schema_of(cls: type, *, mode: JsonSchemaMode = "validation") -> dict[str, Any]:
    """pydantic's JSON Schema of a model or of one of the plan's dataclasses, with the
    attribute docstrings of every class in it as property descriptions."""
    schema: dict[str, Any] = TypeAdapter(cls).json_schema(by_alias=True, mode=mode)
    for node in [schema, *schema.get("$defs", {}).values()]:
        described = DESCRIBED.get(node.get("title", ""))
        if described is None:
            continue
        if dataclasses.is_dataclass(described):
            for internal in dataclasses.fields(described):
                if internal.metadata.get("internal"):
                    node.get("properties", {}).pop(wire_name(internal.name), None)
        docs = attribute_docstrings(described)
        for name, wire in _wire_names(described).items():
            prop = node.get("properties", {}).get(wire)
            if prop is not None and name in docs:
                prop["description"] = docs[name]
    return schema


def jobplan_schema() -> dict[str, Any]:
    schema = schema_of(JobPlan, mode="serialization")
    job = schema["$defs"]["JobConfig"]
    for name in ("command", "parallel"):
        # On the wire the unused form is left out rather than null.
        prop = job["properties"][name]
        job["properties"][name] = {**prop["anyOf"][0], **_keep(prop)}
    job["oneOf"] = [{"required": ["command"]}, {"required": ["parallel"]}]
    return {"$schema": SCHEMA_DIALECT, "$id": "https://devjobs.dev/schemas/jobplan.json", **schema}


def customizations_schema() -> dict[str, Any]:
    job = schema_of(JobSpec)
    defs = job.pop("$defs", {})
    job["required"] = [name for name in job.get("required", []) if name != "name"]
    job["properties"].pop("name")
    job["description"] = "A job named by its key; the same fields as a Project CR job."
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://devjobs.dev/schemas/devcontainer-customizations.json",
        "title": "customizations.devjobs",
        "description": "devjobs settings in devcontainer.json: triggers for tasks, extra jobs.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "triggers": {
                "description": "Task name -> the lifecycle point at which it runs.",
                "type": "object",
                "additionalProperties": {"enum": [trigger.value for trigger in Trigger]},
            },
            "jobs": {
                "description": "Job name -> job definition.",
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/Job"},
            },
        },
        "$defs": {**defs, "Job": job},
    }


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON Schema node as a Kubernetes structural OpenAPI v3 schema:
    refs inlined, `X | None` as X, no titles/defaults, integer bounds in
    OpenAPI 3.0 form. Unions of several types keep their first (the CR's) form."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in schema:
        # `X | None` becomes X: the API server drops nulls of non-nullable fields,
        # which for an optional field means the same as leaving it out.
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        return _structural({**options[0], **_keep(schema)}, defs)
    node: dict[str, Any] = {}
    for key, value in schema.items():
        if key in {"title", "default", "$defs"}:
            continue
        if key == "additionalProperties" and not isinstance(value, dict):
            continue  # structural schemas forbid `additionalProperties: false`
        if key == "description":
            node[key] = " ".join(value.split())
        elif key == "enum":
            node[key] = list(value)
        elif key == "properties":
            node[key] = {name: _structural(child, defs) for name, child in value.items()}
        elif key in {"items", "additionalProperties"}:
            node[key] = _structural(value, defs)
        elif key == "exclusiveMinimum":
            node["minimum"] = value + 1 if schema.get("type") == "integer" else value
            if schema.get("type") != "integer":
                node["exclusiveMinimum"] = True
        else:
            node[key] = value
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    return node


def _keep(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: schema[key] for key in ("description",) if key in schema}


def project_crd(catalyst_crd: dict[str, Any]) -> dict[str, Any]:
    """Catalyst's Project CRD, widened with devjobs' per-source fields."""
    crd = copy.deepcopy(catalyst_crd)
    job = schema_of(JobSpec)
    job_schema = _structural(job, job.get("$defs", {}))
    job_schema["description"] = "A CI-style job run by devjobs for this source."
    # The one field where null differs from absent: "the build image, not the
    # devcontainer's image".
    job_schema["properties"]["image"]["nullable"] = True
    # An env value is a string or an object (one key of a Secret or ConfigMap), which a
    # structural schema cannot say (no type unions): the server keeps either as written,
    # and devjobs' reader checks it when it reads the Project, as it reads a file.
    job_schema["properties"]["env"]["additionalProperties"] = {
        "x-kubernetes-preserve-unknown-fields": True
    }
    ref = schema_of(DevcontainerRef)
    devcontainer_schema = _structural(ref, ref.get("$defs", {}))
    devcontainer_schema["description"] = (
        "Which devcontainer.json devjobs reads for this source (path), or none (enabled: false)."
    )
    annotations = crd.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[ANNOTATION_GENERATED_FROM] = (
        "Catalyst's Project CRD plus spec.sources[].jobs and spec.sources[].devcontainer"
    )
    for version in crd["spec"]["versions"]:
        sources = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
            "sources"
        ]["items"]
        sources["properties"]["jobs"] = {
            "description": "Jobs for this source; they override devcontainer.json jobs by name.",
            "type": "array",
            "items": job_schema,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        }
        sources["properties"]["devcontainer"] = devcontainer_schema
    return crd


class _NoAliasDumper(yaml.SafeDumper):
    """Kubernetes manifests are read by many tools; anchors and aliases confuse some."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_all(catalyst_crd_path: Path = CATALYST_PROJECT_CRD) -> dict[str, str]:
    """Relative path under schemas/ -> file content."""
    catalyst = yaml.safe_load(catalyst_crd_path.read_text(encoding="utf-8"))
    return {
        "jobplan.schema.json": json.dumps(jobplan_schema(), indent=2) + "\n",
        "devcontainer-customizations.schema.json": json.dumps(customizations_schema(), indent=2)
        + "\n",
        "crds/projects.catalyst.catalyst.dev.yaml": "# Generated by `python -m devjobs.schemas`:"
        " do not edit.\n---\n"
        + yaml.dump(project_crd(catalyst), Dumper=_NoAliasDumper, sort_keys=False),
    }


DEPLOY_COPIES = {"crds/projects.catalyst.catalyst.dev.yaml": REPO_ROOT / "deploy" / "crds"}
"""Generated files that `kubectl apply -k deploy/` also ships (kustomize reads only files
under its own folder, so deploy/ keeps a copy; tests/test_controller_deploy.py checks it)."""


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else CATALYST_PROJECT_CRD
    for relative, content in render_all(source).items():
        targets = [SCHEMAS_DIR / relative]
        if relative in DEPLOY_COPIES:
            targets.append(DEPLOY_COPIES[relative] / Path(relative).name)
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            print(f"wrote {target.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
