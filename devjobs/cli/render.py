"""`devjobs render`: print the Kubernetes objects devjobs would create, without a cluster.

The same `render()` feeds `devjobs run` and the controller, so what this prints is what
they apply. Output is byte-stable: sorted keys, objects in plan order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from devjobs.cli.numbers import whole_number
from devjobs.errors import DevjobsError
from devjobs.resolver.models import Trigger


def add_render_arguments(parser: Any, *, selection: bool = True) -> None:
    """Options that shape the rendered objects; shared by `render` and `run`. Without
    `selection`, leaves out JOB..., --trigger and --image (a parser that has them)."""
    if selection:
        parser.add_argument(
            "jobs",
            nargs="*",
            metavar="JOB",
            help="render these jobs (JOB or SOURCE/JOB) as the Manual trigger instead",
        )
        parser.add_argument(
            "--trigger",
            type=Trigger,
            choices=list(Trigger),
            metavar="TRIGGER",
            help="the lifecycle point whose jobs to render: " + ", ".join(t.value for t in Trigger),
        )
        parser.add_argument(
            "--image",
            action="append",
            default=[],
            metavar="[SOURCE=]IMAGE",
            help="the image for jobs with no image of their own (default: Catalyst's build "
            "image registry.default.svc.cluster.local:5000/<project>/<build>-<env>:<commit>)",
        )
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="SOURCE=BUILD",
        help="the Catalyst build whose image a source's jobs use (default: the source name)",
    )
    parser.add_argument("--git-image", metavar="IMAGE", help="image of the clone init container")
    parser.add_argument(
        "--git-secret",
        metavar="SECRET",
        help="Secret (keys password, optional username) the clone authenticates with",
    )
    parser.add_argument(
        "--github-installation-id",
        metavar="ID",
        help="clone with Catalyst's credential helper (catalyst-git-scripts ConfigMap); for "
        "`devjobs run` with a GitHub App, also the installation that posts check runs "
        "(default there: the Project's githubInstallationId)",
    )
    parser.add_argument(
        "--workspace",
        choices=["clone", "empty", "image"],
        default="clone",
        help="clone (default): clone the source at the Environment's commit into an emptyDir "
        "at workingDir; empty: the emptyDir only; image: no volume, use the image's files",
    )
    parser.add_argument(
        "--workload",
        default="web",
        metavar="DEPLOYMENT",
        help="the Deployment InitContainer jobs are added to (default: web)",
    )
    parser.add_argument(
        "--ttl",
        type=whole_number(0),
        metavar="SECONDS",
        help="how long finished Jobs are kept (default: a week)",
    )


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values:
        name, sep, item = value.partition("=")
        if not sep or not name or not item:
            raise DevjobsError(flag, f"expected SOURCE=VALUE, got {value!r}")
        result[name] = item
    return result


def options_from_args(args: argparse.Namespace, attempts: dict[str, int] | None = None) -> Any:
    """RenderOptions from the arguments of `add_render_arguments`."""
    from devjobs.kube.images import parse_image_overrides
    from devjobs.kube.podspec import DEFAULT_TTL_SECONDS, RenderOptions
    from devjobs.kube.workspace import DEFAULT_GIT_IMAGE, GitCredentials

    if not args.jobs and args.trigger is None:
        raise DevjobsError("--trigger", "give a trigger or name the jobs to run")
    if args.jobs and args.trigger not in (None, Trigger.MANUAL):
        raise DevjobsError("--trigger", "named jobs run as the Manual trigger; drop --trigger")
    images = args.image if isinstance(args.image, list) else [args.image] if args.image else []
    return RenderOptions(
        trigger=Trigger(args.trigger) if args.trigger else None,
        jobs=tuple(args.jobs),
        images=parse_image_overrides(images),
        builds=_pairs(args.build, "--build"),
        git_image=args.git_image or DEFAULT_GIT_IMAGE,
        git_credentials=GitCredentials(
            secret=args.git_secret, catalyst_installation_id=args.github_installation_id
        ),
        workload=args.workload,
        workspace=args.workspace,
        ttl_seconds=DEFAULT_TTL_SECONDS if args.ttl is None else args.ttl,
        attempts=attempts or {},
    )


def format_objects(objects: list[dict[str, Any]], output: str) -> str:
    """YAML documents or a JSON v1 List, keys sorted: same objects, same bytes."""
    if output == "json":
        document = {"apiVersion": "v1", "kind": "List", "items": objects}
        return json.dumps(document, indent=2, sort_keys=True) + "\n"
    import yaml

    base: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: ~10x faster

    class Dumper(base):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True  # no &id001 anchors: every object reads on its own

    return "".join(
        "---\n" + yaml.dump(obj, Dumper=Dumper, sort_keys=True, allow_unicode=True, width=1 << 30)
        for obj in objects
    )


def environment_from_files(environment: Path | None, project: Path | None) -> Any:
    """The Environment from `--environment FILE`, else from the PROJECT file's documents."""
    from devjobs.resolver import environment as envmod

    if environment is not None:
        return envmod.load_file(environment)
    if project is not None:
        found = envmod.load_file(project, required=False)
        if found is not None:
            return found
    raise DevjobsError("--environment", "required: a file with the Environment to render for")


def register(subparsers: Any) -> None:
    from devjobs.cli.plan import add_input_arguments

    parser = subparsers.add_parser(
        "render",
        help="print the Kubernetes objects devjobs would create (no cluster needed)",
        description="Resolve the plan and print the batch/v1 Jobs of one trigger (or of the "
        "named jobs), and at PreDeploy the workload's init-container patch, exactly as "
        "`devjobs run` applies them.",
    )
    add_input_arguments(parser)
    add_render_arguments(parser)
    parser.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from devjobs.cli.plan import request_from_args
    from devjobs.kube.render import render
    from devjobs.resolver.plan import resolve

    options = options_from_args(args)
    environment = environment_from_files(args.environment, args.project)
    plan = resolve(request_from_args(args)).plan
    rendered = render(plan, environment, options)
    sys.stdout.write(format_objects(rendered.manifests(), args.output))
    return 0
