"""Whatever a hostile repository puts in devcontainer.json, `read_devcontainer` either
returns a result or raises DevjobsError: no other exception, no hang."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devjobs.errors import DevjobsError
from devjobs.resolver.devcontainer import Devcontainer, read_devcontainer
from tests.test_conformance import CORPUS

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # nothing written into the working tree
)

CORPUS_TEXTS = sorted(
    path.read_text(errors="replace")
    for path in (CORPUS / "cases").rglob("*devcontainer*.json")
    if path.is_file()
) or ['{"postCreateCommand": "x"}']


def read_bytes(data: bytes, target: str) -> Devcontainer | None:
    """Read `data` as a checkout's .devcontainer.json; only DevjobsError may escape."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "app"
        (root / ".devcontainer").mkdir(parents=True)
        (root / ".devcontainer" / "devcontainer.json").write_bytes(data)
        (root / ".devcontainer" / "compose.yml").write_text("services: {app: {image: x}}")
        try:
            return read_devcontainer(
                root,
                source="app",
                basename="app",
                target=target,  # type: ignore[arg-type]
                local_env={"HOME": "/root"},
            )
        except DevjobsError as error:
            text = str(error)
            assert text and "\n" not in text
            return None


targets = st.sampled_from(["local", "cluster"])


@FUZZ
@given(st.binary(max_size=2000), targets)
def test_random_bytes_never_crash_the_reader(data: bytes, target: str) -> None:
    read_bytes(data, target)


JSONC_PIECES = st.sampled_from(
    [
        '"',
        "'",
        ",",
        ":",
        "{",
        "}",
        "[",
        "]",
        "//",
        "/*",
        "*/",
        "\n",
        "\\",
        "\\u",
        "${",
        "}",
        "NaN",
        "-",
        "0x1",
        "1e999",
        "null",
        "\ufeff",
        "\x00",
        "\ud800",
        "é",
    ]
)


@st.composite
def mutated_corpus_file(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(CORPUS_TEXTS))
    for _ in range(draw(st.integers(1, 5))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 20)))
        insert = draw(st.lists(JSONC_PIECES | st.text(max_size=3), max_size=3))
        text = text[:start] + "".join(insert) + text[end:]
    return text


@FUZZ
@given(mutated_corpus_file(), targets)
def test_mutated_corpus_files_never_crash_the_reader(text: str, target: str) -> None:
    read_bytes(text.encode("utf-8", "surrogatepass"), target)


VARIABLE_TEXT = st.lists(
    st.sampled_from(
        [
            "${localEnv:HOME}",
            "${env:X:d}",
            "${localEnv}",
            "${localWorkspaceFolder}",
            "${containerWorkspaceFolder}",
            "${containerEnv:P}",
            "${devcontainerId}",
            "${",
            "}",
            "/w",
            " ",
            "",
            "\x00",
            "a:b",
            "Run Tests",
            "post-create",
        ]
    )
    | st.text(max_size=6),
    max_size=4,
).map("".join)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | VARIABLE_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(VARIABLE_TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
COMMANDS = (
    VARIABLE_TEXT
    | st.lists(VARIABLE_TEXT | JSON_VALUES, max_size=3)
    | st.dictionaries(
        VARIABLE_TEXT, VARIABLE_TEXT | st.lists(VARIABLE_TEXT, max_size=3) | JSON_VALUES, max_size=3
    )
    | JSON_VALUES
)
JOB_FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "command",
            "trigger",
            "image",
            "env",
            "workingDir",
            "timeoutSeconds",
            "retries",
            "runAs",
            "enabled",
            "setup",
            "name",
            "bogus",
        ]
    ),
    COMMANDS | st.sampled_from(["PreDeploy", "Manual", "InitContainer", "Job", True, False, 0, -1]),
    max_size=6,
)
CONFIG_FIELDS: dict[str, Any] = {
    "image": VARIABLE_TEXT | JSON_VALUES,
    "workspaceFolder": VARIABLE_TEXT | JSON_VALUES,
    "containerEnv": st.dictionaries(VARIABLE_TEXT, VARIABLE_TEXT | JSON_VALUES, max_size=3)
    | JSON_VALUES,
    "remoteEnv": st.dictionaries(VARIABLE_TEXT, VARIABLE_TEXT | st.none(), max_size=3)
    | JSON_VALUES,
    "onCreateCommand": COMMANDS,
    "updateContentCommand": COMMANDS,
    "postCreateCommand": COMMANDS,
    "postStartCommand": COMMANDS,
    "initializeCommand": COMMANDS,
    "tasks": st.dictionaries(VARIABLE_TEXT, COMMANDS, max_size=4) | JSON_VALUES,
    "features": JSON_VALUES,
    "dockerComposeFile": st.sampled_from(["compose.yml", "missing.yml", "../../x.yml", ""])
    | JSON_VALUES,
    "service": st.sampled_from(["app", "db"]) | JSON_VALUES,
    "customizations": st.fixed_dictionaries(
        {},
        optional={
            "devjobs": st.fixed_dictionaries(
                {},
                optional={
                    "triggers": st.dictionaries(
                        VARIABLE_TEXT, VARIABLE_TEXT | JSON_VALUES, max_size=3
                    ),
                    "jobs": st.dictionaries(VARIABLE_TEXT, JOB_FIELDS | JSON_VALUES, max_size=3),
                    "other": JSON_VALUES,
                },
            )
            | JSON_VALUES
        },
    )
    | JSON_VALUES,
}


@FUZZ
@given(st.fixed_dictionaries({}, optional=CONFIG_FIELDS), targets)
def test_random_configs_with_random_commands_give_a_result_or_a_clean_error(
    config: dict[str, Any], target: str
) -> None:
    result = read_bytes(json.dumps(config).encode(), target)
    if result is not None:
        names = [job.name for job in result.jobs]
        assert len(names) == len(set(names))
        for job in result.jobs:
            assert job.working_dir.startswith("/")
            argvs = [job.command] if job.command else list((job.parallel or {}).values())
            assert argvs and all(argv and argv[0] for argv in argvs)
