"""`devjobs plan`: resolve the job plan and show it, with where every job came from.

Also home of the input arguments (`PROJECT`, `--environment`, `--source`, `--config`,
`--target`) that every command reading a plan shares.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from devjobs.resolver.models import JobConfig, JobPlan


def _name_value(flag: str) -> Any:
    def parse(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(f"{flag} expects NAME=VALUE, got {text!r}")
        return name, value

    return parse


def add_input_arguments(parser: argparse.ArgumentParser, *, environment_file: bool = True) -> None:
    """The arguments that say what to plan; shared by plan, render and run."""
    parser.add_argument(
        "project",
        nargs="?",
        type=Path,
        metavar="PROJECT",
        help="a YAML or JSON file with a catalyst.catalyst.dev Project (and optionally an "
        "Environment pinning each source's commit)",
    )
    if environment_file:
        parser.add_argument(
            "--environment",
            type=Path,
            metavar="FILE",
            help="a file with the Environment whose sources' commitSha/branch pin the plan",
        )
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        type=_name_value("--source"),
        metavar="NAME=DIR|URL",
        help="use a local directory (uncommitted work) or another repository URL for "
        "source NAME, or add source NAME; without a Project, plan just these sources",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        type=_name_value("--config"),
        metavar="NAME=PATH",
        help="the devcontainer.json of source NAME, relative to its root (when the "
        "repository has several under .devcontainer/<folder>/)",
    )
    parser.add_argument(
        "--target",
        choices=["cluster", "local"],
        default=None,
        help="cluster (default): never read this machine's environment, workspace is the "
        "clone inside the job's pod; local: substitute ${localEnv:...} and "
        "${localWorkspaceFolder} from this machine",
    )


def _pairs(parser_error: Any, flag: str, pairs: list[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in pairs:
        if name in result:
            parser_error(f"{flag} {name}=... given twice")
        result[name] = value
    return result


def request_from_args(
    args: argparse.Namespace, *, target: str | None = None, full_checkout: bool = False
) -> Any:
    """A PlanRequest from parsed input arguments (`target` is the command's default)."""
    from devjobs.resolver.plan import PlanRequest

    def usage(message: str) -> None:
        print(f"devjobs: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    # `run` on a cluster reuses `--environment` for NAMESPACE/NAME, which is no file.
    environment = getattr(args, "environment", None)
    return PlanRequest(
        project_file=args.project,
        environment_file=environment if isinstance(environment, Path) else None,
        sources=_pairs(usage, "--source", args.source),
        configs=_pairs(usage, "--config", args.config),
        target="local" if (args.target or target) == "local" else "cluster",
        full_checkout=full_checkout,
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="resolve and show the job plan (no cluster needed)",
        description="Resolve the jobs of a Project and its sources' devcontainer.json files "
        "into one ordered plan and show it, with where every job came from. Remote sources "
        "are fetched sparsely (only their devcontainer files) into a cache.",
    )
    add_input_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        choices=["table", "json", "yaml"],
        default="table",
        help="table (default, for people), or the JobPlan document as json or yaml",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from devjobs.resolver.plan import resolve

    resolved = resolve(request_from_args(args))
    sys.stdout.write(format_plan(resolved.plan, args.output))
    return 0


def format_plan(plan: JobPlan, output: str) -> str:
    document = plan.to_wire()
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return format_table(plan)


def describe_command(job: JobConfig, width: int = 60) -> str:
    if job.parallel is not None:
        text = "parallel: " + "; ".join(
            f"{key}: {_argv_text(argv)}" for key, argv in job.parallel.items()
        )
    else:
        assert job.command is not None
        text = _argv_text(job.command)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _argv_text(argv: list[str]) -> str:
    if len(argv) == 3 and argv[:2] == ["/bin/sh", "-c"]:
        return argv[2]
    return shlex.join(argv)


def describe_origins(job: JobConfig) -> str:
    return " < ".join(f"{origin.file}#{origin.pointer}" for origin in job.origins)


def format_table(plan: JobPlan) -> str:
    header = ("SOURCE", "JOB", "TRIGGER", "RUNS AS", "IMAGE", "COMMAND", "ORIGIN")
    rows = [
        (
            job.source,
            job.name,
            job.trigger.value,
            job.run_as.value,
            job.image or "(build image)",
            describe_command(job),
            describe_origins(job),
        )
        for job in plan.jobs
    ]
    lines = []
    if rows:
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    else:
        lines.append("No jobs.")
    if plan.skipped:
        lines.append("")
        lines.append("Skipped:")
        for item in plan.skipped:
            where = f"{item.file}#{item.pointer}" if item.file else item.pointer
            lines.append(f"  {item.source}: {where}: {item.reason}")
    if plan.warnings:
        lines.append("")
        lines.append("Warnings:")
        for warning in plan.warnings:
            lines.append(f"  {warning}")
    return "\n".join(lines) + "\n"
