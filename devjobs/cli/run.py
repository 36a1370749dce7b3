"""`devjobs run`: run a job plan, on this machine (`--local`) or in an environment's cluster.

The local path resolves the plan with target "local" and hands it to
`devjobs.runner.local`. With no PROJECT and no `--source` it runs the current directory
when that has a devcontainer config, else the embedded default workspace (a copy of
`devjobs/data/default`, so jobs never write into the installed package).

PROJECT and JOB are both positional: the first positional is PROJECT only when it names
an existing file or ends in .yaml/.yml/.json; otherwise it is the first JOB, so
`devjobs run --local test` runs the job `test` of the current directory. Positionals and
options may be mixed in any order (`devjobs run P --environment X test`): the `run`
parser uses argparse's intermixed parsing.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from devjobs.cli.numbers import seconds, whole_number
from devjobs.cli.plan import add_input_arguments, request_from_args
from devjobs.errors import DevjobsError

PROJECT_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_SOURCE = "default"


class _IntermixedParser(argparse.ArgumentParser):
    """An ArgumentParser whose positionals may come after options: JOB names after
    `--environment X`, say. Plain argparse fills PROJECT and JOB... from the first run of
    positionals and rejects later ones as unrecognized."""

    _nested = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._nested:  # parse_known_intermixed_args calls back in, twice
            return super().parse_known_args(args, namespace)
        self._nested = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._nested = False


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run jobs: on this machine with --local, or in an environment's cluster",
        description="Run a job plan's jobs, lifecycle points in order (PostBuild, PreDeploy, "
        "PostDeploy; Manual jobs only when named), setup steps first.",
    )
    add_input_arguments(parser, environment_file=False)
    parser.add_argument(
        "jobs",
        nargs="*",
        metavar="JOB",
        help="run just these jobs (`job` or `source/job`, Manual ones included) with their setup",
    )
    parser.add_argument(
        "--environment",
        metavar="NS/NAME|FILE",
        help="on a cluster: the Environment to run in; with --local: a file with the "
        "Environment whose sources' commits pin the plan",
    )
    parser.add_argument("--trigger", metavar="T", type=_trigger, help="run only this point")
    parser.add_argument("--local", action="store_true", help="run on this machine")
    local = parser.add_argument_group("local runs (--local)")
    local.add_argument(
        "--backend",
        choices=["auto", "docker", "process"],
        default="auto",
        help="docker: each job in a container of its image; process: each command a child "
        "process in the checkout (images unused); auto (default): docker when an engine "
        "answers at DOCKER_HOST",
    )
    local.add_argument(
        "--image", metavar="IMAGE", help="docker: the image for jobs without one (build image)"
    )
    local.add_argument("--network", metavar="NAME", help="docker: the job containers' network")
    local.add_argument(
        "-j", "--jobs", dest="parallelism", type=whole_number(1), default=1, metavar="N",
        help="run up to N independent jobs of a lifecycle point at once (default 1)",
    )  # fmt: skip
    local.add_argument(
        "--fail-fast", action="store_true", help="stop everything at the first failed job"
    )
    local.add_argument(
        "--timeout", type=seconds, metavar="SECONDS",
        help="per-job time limit, overriding each job's timeoutSeconds",
    )  # fmt: skip
    local.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    local.add_argument(
        "-o", "--output", choices=["text", "json"], default="text",
        help="json: print only a result document on stdout (job output goes to stderr)",
    )  # fmt: skip
    add_cluster_arguments(parser.add_argument_group("cluster runs"), selection=False)
    parser.set_defaults(handler=run)
    # The subcommand's parser is made by `add_subparsers`' class; only its parsing differs.
    parser.__class__ = _IntermixedParser


def run(args: argparse.Namespace) -> int:
    _split_project_and_jobs(args)
    if args.local:
        return run_local(args)
    return run_on_cluster(args)


def add_cluster_arguments(parser: Any, *, selection: bool = True) -> None:
    """`run`'s cluster options and the render options (`--workspace`, `--git-secret`...);
    with `selection` also JOB..., --trigger and --image (leave them out when the caller's
    parser has them). `parser` may be an argument group."""
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE", help="default: $KUBECONFIG")
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context")
    parser.add_argument(
        "--rerun", action="store_true", help="start a fresh attempt even if these jobs ran"
    )
    parser.add_argument("--no-logs", action="store_true", help="do not stream job logs")
    parser.add_argument(
        "--detach", action="store_true", help="create the Jobs and exit without following them"
    )
    parser.add_argument(
        "--github-api-url",
        default="https://api.github.com",
        metavar="URL",
        help="GitHub API for commit statuses (posted when $DEVJOBS_GITHUB_TOKEN or "
        "$GITHUB_TOKEN is set) or, with a GitHub App ($DEVJOBS_GITHUB_APP_ID and "
        "$DEVJOBS_GITHUB_APP_KEY_FILE), check runs (default: https://api.github.com)",
    )
    parser.add_argument(
        "--target-url",
        metavar="TEMPLATE",
        help="the commit statuses' (or check runs') link, with {repo} (owner/name), {owner}, "
        "{name}, {sha}, {context} (devjobs/SOURCE/JOB), {source} and {job} filled in "
        "(URL-quoted), e.g. "
        "https://ci.example/{repo}/commit/{sha}/{job}",
    )
    from devjobs.cli.render import add_render_arguments

    add_render_arguments(parser, selection=selection)


def run_on_cluster(args: argparse.Namespace, kube: Any = None, out: Any = None) -> int:
    """`devjobs run PROJECT --environment NS/NAME --trigger T [JOB...]`: the cluster
    runner's path, with a `runner.cluster.run.ClusterRun` built from the arguments."""
    if args.environment is None:
        # A missing option is a usage error (exit 2), like argparse's own.
        print(
            "devjobs: error: --environment NAMESPACE/NAME is required to run on a cluster "
            "(or run on this machine with --local)",
            file=sys.stderr,
        )
        return 2
    return run_cluster(cluster_request(args), kube or connect(args.kubeconfig, args.context), out)


def cluster_request(args: argparse.Namespace) -> Any:
    """A `ClusterRun` from `run`'s arguments; a bad --target-url fails here, before
    anything is read."""
    import os

    from devjobs.cli.render import options_from_args
    from devjobs.github.statuses import RUN_TOKEN_VARIABLES, from_environment
    from devjobs.resolver import environment as envmod
    from devjobs.runner.cluster.run import ClusterRun

    github = from_environment(
        os.environ, RUN_TOKEN_VARIABLES,
        api_url=args.github_api_url or "https://api.github.com", target_url=args.target_url,
    )  # fmt: skip
    github_app = _github_app(args)
    namespace, name = envmod.parse_ref(str(args.environment))
    return ClusterRun(
        namespace=namespace,
        environment=name,
        plan=request_from_args(args),
        options=options_from_args(args),
        rerun=args.rerun,
        logs=not args.no_logs,
        detach=args.detach,
        github=github,
        github_app=github_app,
    )


def _github_app(args: argparse.Namespace) -> Any:
    """A `GitHubAppRun` when `$DEVJOBS_GITHUB_APP_ID` is set (the controller's variables:
    the key from `$DEVJOBS_GITHUB_APP_KEY_FILE`), else None. The installation is
    `--github-installation-id` when given, else the Project's."""
    import os

    from devjobs.cli.controller import APP_ID_VARIABLE, APP_KEY_VARIABLE
    from devjobs.github.app import GitHubApp
    from devjobs.github.statuses import check_target_url
    from devjobs.runner.cluster.report import GitHubAppRun

    app_id = os.environ.get(APP_ID_VARIABLE, "").strip()
    key_file = os.environ.get(APP_KEY_VARIABLE, "").strip()
    if not app_id:
        return None
    if not key_file:
        raise DevjobsError(
            APP_ID_VARIABLE, f"a GitHub App needs its key too: set {APP_KEY_VARIABLE}"
        )
    installation = str(args.github_installation_id or "").strip()
    if installation and (not installation.isdigit() or int(installation) <= 0):
        raise DevjobsError(
            "--github-installation-id", f"{installation!r} is not a positive integer"
        )
    if args.target_url:
        check_target_url(args.target_url)
    api_url = args.github_api_url or "https://api.github.com"
    return GitHubAppRun(
        GitHubApp.from_key_file(app_id, key_file, api_url=api_url),
        api_url=api_url,
        installation_id=int(installation) if installation else None,
        target_url=args.target_url,
    )


def run_cluster(request: Any, kube: Any, out: Any) -> int:
    from devjobs.runner.cluster.run import run_on_cluster as run

    return run(request, kube, out)


def connect(kubeconfig: Path | None, context: str | None) -> Any:
    from devjobs.kube.client import connect as kube_connect

    return kube_connect(kubeconfig, context)


def run_local(args: argparse.Namespace) -> int:
    from devjobs.resolver.plan import resolve
    from devjobs.runner.local import choose_backend, run_plan
    from devjobs.runner.local.executor import RunOptions
    from devjobs.runner.local.schedule import build_schedule

    if args.environment is not None:
        args.environment = Path(args.environment)
    request = request_from_args(args, target="local", full_checkout=True)
    with _default_workspace(request) as (request, embedded):
        resolved = resolve(request)
        plan = resolved.plan
        for warning in plan.warnings:
            print(f"devjobs: warning: {warning}", file=sys.stderr)
        stages = build_schedule(plan, trigger=args.trigger, names=args.jobs)
        if not stages:
            manual = ", ".join(j.key for j in plan.jobs if j.trigger == "Manual")
            hint = f" (Manual jobs run only when named: {manual})" if manual else ""
            print(f"devjobs: nothing to run{hint}", file=sys.stderr)
            return 0
        backend_choice = "process" if embedded and args.backend == "auto" else args.backend
        backend = choose_backend(backend_choice, image=args.image, network=args.network)
        options = RunOptions(
            parallelism=args.parallelism, fail_fast=args.fail_fast, timeout_seconds=args.timeout
        )
        result, report = run_plan(
            plan,
            stages,
            resolved.checkouts,
            backend,
            options,
            json_output=args.output == "json",
            install_signal_handlers=_install_signal_handlers,
        )
    if args.junit is not None:
        from devjobs.runner.local.report import junit_xml

        try:
            args.junit.write_text(junit_xml(result), encoding="utf-8")
        except OSError as error:
            raise DevjobsError(str(args.junit), f"cannot write the JUnit report: {error}") from None
    if report is not None:
        print(report)
    return result.exit_code


@contextmanager
def _default_workspace(request: Any) -> Iterator[tuple[Any, bool]]:
    """The request as given, or with the current directory / the embedded default as its
    one source when it names nothing; True when the embedded default is used."""
    if request.project_file is not None or request.sources or request.environment_file:
        yield request, False
        return
    from devjobs.resolver.discovery import find_config
    from devjobs.resolver.names import is_valid_name, normalise_name

    cwd = Path.cwd()
    if find_config(cwd) is not None:
        name = cwd.name if is_valid_name(cwd.name) else _safe_name(normalise_name, cwd.name)
        print(f"devjobs: running the devcontainer config of this directory as source "
              f"{name!r}", file=sys.stderr)  # fmt: skip
        yield dataclasses.replace(request, sources={name: str(cwd)}), False
        return
    embedded = resources.files("devjobs") / "data" / "default"
    with tempfile.TemporaryDirectory(prefix="devjobs-default-") as scratch:
        workspace = Path(scratch) / DEFAULT_SOURCE
        with resources.as_file(embedded) as original:
            shutil.copytree(original, workspace)
        print("devjobs: no devcontainer config here: running the embedded default "
              f"workspace (a copy in {workspace})", file=sys.stderr)  # fmt: skip
        yield dataclasses.replace(request, sources={DEFAULT_SOURCE: str(workspace)}), True


def _safe_name(normalise: Any, text: str) -> str:
    try:
        name: str = normalise(text, "")[0]
    except DevjobsError:
        return "workspace"
    return name


def _install_signal_handlers(interrupt: Any) -> None:
    """Ctrl-C and SIGTERM stop the run cleanly (its jobs cancelled, nothing left behind)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        interrupt()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _split_project_and_jobs(args: argparse.Namespace) -> None:
    """The first positional is a JOB unless it looks like a Project file."""
    project: Path | None = args.project
    if project is None or project.is_file() or project.suffix in PROJECT_SUFFIXES:
        return
    args.jobs = [str(project), *args.jobs]
    args.project = None


def _trigger(text: str) -> Any:
    from devjobs.runner.local.schedule import parse_trigger

    try:
        return parse_trigger(text)
    except DevjobsError as error:
        raise argparse.ArgumentTypeError(error.message) from None
