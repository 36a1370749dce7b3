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

# Subcommand -> its module, in the order `devjobs --help` lists them.
COMMANDS = {
    "plan": "devjobs.cli.plan",
    "render": "devjobs.cli.render",
    "status": "devjobs.cli.status",
    "logs": "devjobs.cli.logs",
    "run": "devjobs.cli.run",
    "controller": "devjobs.cli.controller",
    "cache": "devjobs.cli.cache",
    "ui": "devjobs.cli.ui",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; when `argv` names a subcommand, only that one's module is imported
    (a command's start-up should not pay for the arguments of all the others)."""
    parser = argparse.ArgumentParser(
        prog="devjobs",
        description=(
            "CI-style jobs for preview environments: resolve them from devcontainer.json "
            "and Catalyst Project resources, run them on Kubernetes or locally, report them."
        ),
    )
    parser.add_argument("--version", action="version", version=f"devjobs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((arg for arg in argv or () if not arg.startswith("-")), None)
    modules = [COMMANDS[chosen]] if chosen in COMMANDS else list(COMMANDS.values())
    for module in modules:
        import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 on success, 1 on invalid input or failure, 2 on usage errors."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
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
