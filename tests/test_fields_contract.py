"""The hand-written readers of untrusted jobs (`JobSpec.read`, `DevcontainerRef.read`)
against the JSON Schemas pydantic generates from the same classes (what editors and the
Project CRD enforce): random objects, and whatever the schema refuses the reader
refuses too; whatever the reader accepts the schema accepts. The reader may refuse
more only for its documented extra rules (a command that does nothing, a relative
workingDir, an invalid variable name), which the schema cannot say."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from devjobs.errors import DevjobsError
from devjobs.resolver.fields import InvalidField
from devjobs.resolver.jobspec import ATTRIBUTES, NOT_A_PATH, JobSpec
from devjobs.resolver.project import DevcontainerRef, read_resources
from devjobs.schemas import schema_of

EXTRA_RULES = (
    "is not a valid environment variable name",
    "must be an absolute path",
    "command must not be empty",
    "the program (first item) must not be empty",
    "a parallel command needs at least one entry",
    "must name exactly one of secretRef, configMapRef",
    "must name exactly one of secretKeyRef, configMapKeyRef",
    "is not a valid variable prefix",
    NOT_A_PATH,
)

WORDS = st.sampled_from(
    ["", " ", "x", "/abs", "rel/dir", "Manual", "PostBuild", "PreDeploy", "PostDeploy",
     "Job", "InitContainer", "BAD-NAME", "GOOD_NAME", "true", "30"]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.just(2**40), st.just(0.5), WORDS
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(WORDS, inner, max_size=3)),
    max_leaves=6,
)


TEXT = st.one_of(WORDS, st.text(max_size=4))
OBJECT_NAMES = st.sampled_from(["db", "db.prod", "a" * 253, "Db", "-db", "db.", "db\n", "a" * 254])
KEYS = st.sampled_from(
    ["url", "tls.crt", "_K-1", ".x", "k" * 253, ".", "..", "..x", "a/b", "k\n", "k" * 254]
)
REF = st.dictionaries(
    st.sampled_from(["secretKeyRef", "configMapKeyRef", "secretKeyRef", "configMapKeyRef", "x"]),
    st.fixed_dictionaries(
        {"name": st.one_of(OBJECT_NAMES, OBJECT_NAMES, TEXT), "key": st.one_of(KEYS, KEYS, TEXT)},
        optional={"optional": st.one_of(st.none(), st.booleans(), TEXT)},
    ),
    max_size=2,
)
"""An env value naming a Secret's or ConfigMap's key: mostly one kind, names and keys
valid or just outside Kubernetes' rules."""
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": TEXT,
    "trigger": st.one_of(st.none(), st.sampled_from(["PostBuild", "Manual", "Sometimes"])),
    "runAs": st.one_of(st.none(), st.sampled_from(["Job", "InitContainer", "Sidecar"])),
    "command": st.one_of(
        st.none(),
        TEXT,
        st.lists(TEXT, max_size=3),
        st.dictionaries(TEXT, st.one_of(TEXT, st.lists(TEXT, max_size=2)), max_size=2),
    ),
    "image": st.one_of(st.none(), TEXT),
    "env": st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(["A", "B-C", "_x", ""]), st.one_of(TEXT, REF), max_size=2),
    ),
    "workingDir": st.one_of(st.none(), st.sampled_from(["/w", "rel", ""])),
    "timeoutSeconds": st.one_of(st.none(), st.integers(-2, 3)),
    "retries": st.one_of(st.none(), st.integers(-2, 3)),
    "enabled": st.one_of(st.none(), st.booleans()),
    "setup": st.one_of(st.none(), st.booleans()),
    "runtimeContext": st.one_of(st.none(), st.booleans()),
    "envFrom": st.one_of(
        st.none(),
        st.lists(
            st.dictionaries(
                st.sampled_from(["secretRef", "configMapRef", "prefix"]),
                st.one_of(
                    st.fixed_dictionaries(
                        {"name": TEXT}, optional={"optional": st.one_of(st.none(), st.booleans())}
                    ),
                    st.sampled_from(["APP_", "bad-", ""]),
                ),
                max_size=2,
            ),
            max_size=2,
        ),
    ),
    "path": st.one_of(st.none(), TEXT),
}
"""Per field: mostly well-typed values, valid or just outside the rules."""


def objects(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of `keys`, usually with a plausible value, sometimes any JSON
    value; now and then a misspelt field."""
    # A job without a name is refused at once: give it one (its value may still be bad).
    required = {key: PLAUSIBLE[key] for key in keys if key == "name"}
    optional = {
        key: st.one_of(PLAUSIBLE[key], PLAUSIBLE[key], VALUES)
        for key in keys
        if key not in required
    }
    fields = st.fixed_dictionaries(required, optional=optional)
    typo = st.dictionaries(st.sampled_from(["comand", "Name"]), VALUES, max_size=1)
    return st.one_of(fields, fields, fields, st.builds(lambda a, b: {**a, **b}, fields, typo))


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """`pattern` as JSON Schema (ECMA-262) and Kubernetes read it: `$` is the end of the
    text. Python's `re`, which jsonschema uses as is, also lets it match before a final
    newline, so a name ending in a newline would pass."""
    if isinstance(instance, str) and not re.search(re.sub(r"\$$", r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_extend: Any = jsonschema.validators.extend  # untyped
Validator = _extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


def check(reader: Any, schema: dict[str, Any], value: dict[str, Any]) -> None:
    validator = Validator(schema)
    schema_ok = validator.is_valid(value)
    try:
        reader(value)
    except InvalidField as error:
        assert (
            not schema_ok
            or error.message.endswith(EXTRA_RULES)
            or any(rule in error.message for rule in EXTRA_RULES)
        ), (value, error.path, error.message)
    else:
        assert schema_ok, (value, list(validator.iter_errors(value))[:1])


JOB_SCHEMA = schema_of(JobSpec)
REF_SCHEMA = schema_of(DevcontainerRef)


@settings(max_examples=1500)
@given(objects(list(ATTRIBUTES)))
def test_job_reader_refuses_whatever_the_job_schema_refuses(value: dict[str, Any]) -> None:
    check(JobSpec.read, JOB_SCHEMA, value)


@settings(max_examples=500)
@given(st.dictionaries(st.sampled_from(["A", "_x", "B"]), st.one_of(TEXT, REF, REF), max_size=3))
def test_env_reader_refuses_whatever_the_job_schema_refuses(env: dict[str, Any]) -> None:
    """Variables alone, so that valid references are common: Kubernetes' name and key
    rules (patterns, lengths, exactly one kind) as the schema says them."""
    check(JobSpec.read, JOB_SCHEMA, {"name": "t", "env": env})


@settings(max_examples=300)
@given(objects(["path", "enabled"]))
def test_devcontainer_ref_reader_agrees_with_its_schema(value: dict[str, Any]) -> None:
    check(lambda raw: DevcontainerRef.read(raw, ()), REF_SCHEMA, value)


def test_given_fields_are_what_an_override_overrides() -> None:
    spec = JobSpec.read({"name": "t", "image": None, "workingDir": "/w"})
    assert spec.given == {"name", "image", "working_dir"}
    assert (spec.image, spec.working_dir, spec.enabled) == (None, "/w", True)


def test_values_are_not_coerced() -> None:
    for field, value, message in [
        ("timeoutSeconds", "30", "must be a whole number, not a string"),
        ("timeoutSeconds", True, "must be a whole number, not a boolean"),
        ("enabled", "true", "must be true or false, not a string"),
        ("enabled", None, "must be true or false, not null"),
        (
            "env",
            {"A": 1},
            "must be a string or an object with secretKeyRef or configMapKeyRef, not a number",
        ),
    ]:
        try:
            JobSpec.read({"name": "t", field: value})
        except InvalidField as error:
            assert error.message == message
        else:
            raise AssertionError(f"{field}: {value!r} was accepted")


RESOURCES = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["catalyst.catalyst.dev/v1alpha1", "v1", None]),
        "kind": st.sampled_from(["Project", "Environment"]),
    },
    optional={
        "metadata": st.one_of(
            VALUES, st.fixed_dictionaries({}, optional={"name": TEXT, "namespace": VALUES})
        ),
        "spec": st.one_of(
            VALUES,
            st.fixed_dictionaries(
                {},
                optional={
                    "sources": st.lists(objects(list(ATTRIBUTES)) | VALUES, max_size=2),
                    "projectRef": VALUES,
                    "type": VALUES,
                },
            ),
        ),
    },
)


@settings(max_examples=500)
@given(RESOURCES)
def test_any_project_or_environment_object_is_read_or_refused_with_a_place(
    value: dict[str, Any],
) -> None:
    """Never another exception: every refusal is a DevjobsError naming its place."""
    try:
        resources = read_resources(None, None, project_object=value)
    except DevjobsError as error:
        assert str(error).startswith(f"{value['kind']} "), str(error)
    else:
        assert resources.project is not None or resources.environment is not None
