"""`devjobs run` argument parsing: JOB names may come before or after options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devjobs.cli import build_parser, main


def test_job_names_after_options_are_jobs_not_unrecognized_arguments() -> None:
    parse = build_parser().parse_args
    args = parse(["run", "p.yaml", "--environment", "ns/env", "test", "lint"])
    assert (str(args.project), args.jobs) == ("p.yaml", ["test", "lint"])
    assert args.environment == "ns/env"
    args = parse(["run", "--environment", "ns/env", "p.yaml", "--rerun", "test"])
    assert (str(args.project), args.jobs, args.rerun) == ("p.yaml", ["test"], True)


def test_a_local_run_runs_the_jobs_named_before_and_after_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "app"
    (source / ".devcontainer").mkdir(parents=True)
    config = {"image": "unused", "tasks": {"one": "echo one-ran", "two": "echo two-ran"}}
    (source / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    code = main(
        ["run", "one", "--local", "--backend", "process", "--source", f"app={source}", "two"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    text = out.out + out.err
    assert "one-ran" in text and "two-ran" in text


def test_an_unknown_option_is_still_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--local", "test", "--no-such-option"])
    assert exit_info.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err
