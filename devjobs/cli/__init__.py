"""The `devjobs` command line: a thin dispatcher over one module per subcommand.

Each subcommand module exposes `register(subparsers)`, which adds its parser and sets
`handler` (a function `(args) -> int`) as a default. Modules are imported here only
for their argument definitions: heavy dependencies (the kubernetes client) are
imported inside handlers, so `devjobs plan` never pays for them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from devjobs import __version__
from devjobs.errors import DevjobsError

# One line per subcommand module, in the order `devjobs --help` lists them.
COMMANDS = [
    "devjobs.cli.plan",
    "devjobs.cli.render",
    "devjobs.cli.status",
    "devjobs.cli.logs",
    "devjobs.cli.run",
    "devjobs.cli.controller",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devjobs",
        description=(
            "CI-style jobs for preview environments: resolve them from devcontainer.json "
            "and Catalyst Project resources, run them on Kubernetes or locally, report them."
        ),
    )
    parser.add_argument("--version", action="version", version=f"devjobs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 on success, 1 on invalid input or failure, 2 on usage errors."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except DevjobsError as error:
        print(f"devjobs: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("devjobs: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
