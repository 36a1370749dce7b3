"""`${...}` substitution as the reference does it, for the two targets."""

from __future__ import annotations

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.variables import Variables


def local(env: dict[str, str] | None = None) -> Variables:
    return Variables("/home/me/app", "app", "/workspaces/app", env if env is not None else {})


def cluster() -> Variables:
    return Variables("/workspaces/app", "app", "/workspaces/app", None)


def place() -> str:
    return "dc.json:1:2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${localEnv:HOME}", "/root"),
        ("${env:HOME}/x", "/root/x"),
        ("${localEnv:MISSING}", ""),
        ("${localEnv:MISSING:fallback}", "fallback"),
        ("${localEnv:MISSING:a:b}", "a"),  # the reference splits on every colon
        ("${localEnv:EMPTY:fallback}", ""),  # set but empty is set
        ("${localWorkspaceFolder}", "/home/me/app"),
        ("${localWorkspaceFolderBasename}", "app"),
        ("${containerWorkspaceFolder}/src", "/workspaces/app/src"),
        ("${containerWorkspaceFolderBasename}", "app"),
        ("${devcontainerId}", "${devcontainerId}"),
        ("${containerEnv:PATH}", "${containerEnv:PATH}"),
        ("${HOME} $HOME ${unknown:x}", "${HOME} $HOME ${unknown:x}"),
        ("${localEnv:A}${localEnv:B}", "12"),
        ("${local\nEnv:HOME}", "${local\nEnv:HOME}"),  # no variable spans lines
    ],
)
def test_local_target_substitutes_like_the_reference(text: str, expected: str) -> None:
    variables = local({"HOME": "/root", "EMPTY": "", "A": "1", "B": "2"})
    assert variables.substitute(text, place) == expected
    assert variables.warnings == []


def test_local_env_without_a_name_is_an_error() -> None:
    with pytest.raises(DevjobsError, match=r"dc.json:1:2: \$\{localEnv\} names no"):
        local().substitute("${localEnv}", place)


def test_cluster_target_never_reads_the_environment_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "leaked")
    variables = cluster()
    assert variables.substitute("${localEnv:SECRET_TOKEN}", place) == ""
    assert variables.substitute("${env:SECRET_TOKEN:none}", place) == "none"
    assert len(variables.warnings) == 2
    assert "replaced by an empty string" in variables.warnings[0]
    assert "its default 'none'" in variables.warnings[1]


def test_cluster_target_warns_once_per_variable_and_place() -> None:
    variables = cluster()
    variables.substitute("${localEnv:X} ${localEnv:X}", place)
    assert len(variables.warnings) == 1


def test_cluster_local_workspace_folder_is_the_pod_workspace() -> None:
    assert cluster().substitute("${localWorkspaceFolder}", place) == "/workspaces/app"
