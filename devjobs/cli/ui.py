"""`devjobs ui`: the Jobs view on this machine, with the user's kubeconfig.

Listens on loopback only (`--address`, default 127.0.0.1:8765), makes a random token at
start and prints the URL that carries it as the last line of its start-up output.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_ADDRESS = "127.0.0.1:8765"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="open the Jobs view (Environments, jobs, live logs, Run) in a browser",
        description="Serve the Jobs view on loopback with your kubeconfig; open the URL it "
        "prints last.",
    )
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE", help="default: $KUBECONFIG")
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context")
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], metavar="NS",
        help="show this namespace's Environments (repeat; default: all namespaces)",
    )  # fmt: skip
    parser.add_argument(
        "--address", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
        help=f"loopback address to listen on (default {DEFAULT_ADDRESS}; port 0: any free)",
    )  # fmt: skip
    parser.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="allow cross-origin API requests from this origin (repeat)",
    )  # fmt: skip
    parser.add_argument(
        "--project-namespace", default="catalyst-system", metavar="NS",
        help="where Projects are looked for after the Environment's own namespace",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from devjobs.cli.addresses import loopback_address
    from devjobs.ui.serve import serve_local

    host, port = loopback_address(args.address, "--address")
    return serve_local(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespaces=tuple(args.namespace),
        host=host,
        port=port,
        cors_origins=tuple(args.cors_origin),
        project_namespace=args.project_namespace,
    )
