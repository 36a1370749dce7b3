"""`devjobs controller`: run each lifecycle point's jobs as Environments move along."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

DEFAULT_LEASE = "devjobs-controller"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "controller",
        help="watch Environments and run their jobs at each lifecycle point",
        description=(
            "Watch Catalyst Environments and run their PostBuild, PreDeploy, PostDeploy and "
            "requested Manual jobs for the current commit; one active replica per Lease."
        ),
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], metavar="NS",
        help="watch this namespace (repeatable); default: all namespaces",
    )  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch all (default)")
    parser.add_argument(
        "--project-namespace", metavar="NS", default="catalyst-system",
        help="where Projects live besides each Environment's namespace (default: %(default)s; "
        "'' for none)",
    )  # fmt: skip
    parser.add_argument("--workload", default="web", help="the workload Deployment (default: web)")
    parser.add_argument("--workers", type=int, default=4, help="parallel reconciles (default: 4)")
    parser.add_argument("--git-image", help="image of the clone init container")
    parser.add_argument(
        "--image", action="append", default=[], metavar="[SOURCE=]IMAGE",
        help="image for jobs with no image of their own instead of the Catalyst build",
    )  # fmt: skip
    parser.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG or in-cluster")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--cache-dir", type=Path, help="git cache (default: the resolver's)")
    report = parser.add_argument_group(
        "GitHub commit statuses (when $DEVJOBS_GITHUB_TOKEN is set, from a Secret)"
    )
    parser.add_argument(
        "--ui-address", metavar="HOST:PORT",
        help="also serve the Jobs view here (viewers sign in with their own token; "
        "TokenReview and SubjectAccessReview decide what each may see and run)",
    )  # fmt: skip
    report.add_argument(
        "--github-api-url", default="https://api.github.com", metavar="URL",
        help="GitHub (Enterprise) API (default: %(default)s)",
    )  # fmt: skip
    report.add_argument(
        "--target-url", metavar="TEMPLATE",
        help="link of each status, e.g. https://ci.example/{repo}/{sha}/{source}/{job}",
    )  # fmt: skip
    app = parser.add_argument_group(
        "GitHub App (check runs instead of commit statuses, and Re-run from GitHub)"
    )
    app.add_argument(
        "--github-app-id", metavar="ID", help="the App's id (default: $DEVJOBS_GITHUB_APP_ID)"
    )
    app.add_argument(
        "--github-app-key-file", metavar="PATH", type=Path,
        help="the App's PEM private key, a mounted Secret (default: $DEVJOBS_GITHUB_APP_KEY_FILE)",
    )  # fmt: skip
    app.add_argument(
        "--github-webhook-secret-file", metavar="PATH", type=Path,
        help="the webhook secret (default: $DEVJOBS_GITHUB_WEBHOOK_SECRET_FILE); with "
        "--webhook-address, serves GitHub's check_run/check_suite deliveries",
    )  # fmt: skip
    app.add_argument(
        "--webhook-address", metavar="ADDR",
        help="HOST:PORT or :PORT of the webhook endpoint (path /github/webhook)",
    )  # fmt: skip
    app.add_argument(
        "--ui-url", metavar="TEMPLATE",
        help="each check run's details link, e.g. https://devjobs.example/{namespace}/"
        "{environment}/{source}/{job} (default: --target-url)",
    )  # fmt: skip
    gate = parser.add_argument_group(
        "PreDeploy gate webhook (clusters without MutatingAdmissionPolicy: "
        "deploy/predeploy-gate-webhook/)"
    )
    gate.add_argument(
        "--gate-webhook-address", metavar="HOST:PORT",
        help="serve the mutating admission webhook that gates new workload pods here, over "
        "HTTPS (path /predeploy-gate), on every replica",
    )  # fmt: skip
    gate.add_argument(
        "--gate-webhook-cert", metavar="FILE", type=Path,
        help="its PEM certificate (with --gate-webhook-key: loaded again when they change)",
    )  # fmt: skip
    gate.add_argument("--gate-webhook-key", metavar="FILE", type=Path, help="its PEM private key")
    election = parser.add_argument_group("leader election")
    election.add_argument(
        "--leader-election-namespace", metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else no election)",
    )  # fmt: skip
    election.add_argument("--no-leader-election", action="store_true")
    election.add_argument("--lease-name", default=DEFAULT_LEASE)
    election.add_argument("--lease-seconds", type=int, default=15)
    election.add_argument(
        "--identity", help="default: $POD_NAME (else the hostname) + a random suffix"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from devjobs.controller.decide import Settings
    from devjobs.controller.leader import LeaderElector
    from devjobs.controller.main import Config, Controller
    from devjobs.github.statuses import CONTROLLER_TOKEN_VARIABLES, from_environment
    from devjobs.kube.client import connect
    from devjobs.kube.images import parse_image_overrides
    from devjobs.kube.podspec import RenderOptions

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("urllib3").setLevel(logging.WARNING)
        logging.getLogger("kubernetes").setLevel(logging.WARNING)
    render = RenderOptions(
        images=parse_image_overrides(args.image), workload=args.workload,
        **({"git_image": args.git_image} if args.git_image else {}),
    )  # fmt: skip
    config = Config(
        namespaces=tuple(args.namespace),
        project_namespace=args.project_namespace or None,
        workload=args.workload,
        workers=args.workers,
        settings=Settings(render=render),
        cache_dir=args.cache_dir,
    )
    ui_address, webhook_address, gate_webhook_address = _listen_addresses(args)
    checks, receiver = _github_app(args)
    if checks is not None:
        config = dataclasses.replace(
            config,
            settings=dataclasses.replace(
                config.settings, ui_url=args.ui_url, target_url=args.target_url
            ),
        )
    kube = connect(args.kubeconfig, args.context)
    if ui_address is not None:
        # Every replica serves the view (reads and viewers' own writes); only the
        # leader reconciles.
        from devjobs.ui.serve import serve_cluster

        serve_cluster(kube, *ui_address)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    if gate_webhook_address is not None:
        # Every replica answers the API server's reviews: they need no leader's state.
        from devjobs.controller import gate_webhook

        gate_webhook.serve(
            *gate_webhook_address, args.gate_webhook_cert, args.gate_webhook_key, stop
        )

    lease_ns = args.leader_election_namespace or os.environ.get("POD_NAMESPACE")
    elector = None
    lost = threading.Event()
    if lease_ns and not args.no_leader_election:
        # $POD_NAME (downward API) names the pod even with hostNetwork, where the
        # hostname is the node's and every replica on it would look the same.
        host = os.environ.get("POD_NAME") or socket.gethostname()
        identity = args.identity or f"{host}-{uuid.uuid4().hex[:6]}"
        elector = LeaderElector(
            kube, lease_ns, args.lease_name, identity, lease_seconds=args.lease_seconds,
            renew_seconds=max(1.0, args.lease_seconds / 3),
        )  # fmt: skip
        if not elector.acquire(stop):
            return 0
        threading.Thread(target=elector.keep, args=(stop, lost), daemon=True).start()
        threading.Thread(target=_stop_when, args=(lost, stop), daemon=True).start()
    try:
        github = from_environment(
            os.environ, CONTROLLER_TOKEN_VARIABLES,
            api_url=args.github_api_url, target_url=args.target_url,
        )  # fmt: skip
        controller = Controller(
            kube, config, github=None if checks is not None else github, checks=checks
        )
        # The leader's alone: deliveries need its reflectors.
        if receiver is not None and webhook_address is not None:
            from devjobs.controller import webhook

            webhook.serve(controller, *webhook_address, receiver(kube), stop)
        controller.run(stop)
    finally:
        if elector is not None and not lost.is_set():
            elector.release()
    if lost.is_set():
        print("devjobs: error: leadership lost; exiting so a candidate can take over",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


APP_ID_VARIABLE = "DEVJOBS_GITHUB_APP_ID"
APP_KEY_VARIABLE = "DEVJOBS_GITHUB_APP_KEY_FILE"
WEBHOOK_SECRET_VARIABLE = "DEVJOBS_GITHUB_WEBHOOK_SECRET_FILE"


def _github_app(args: argparse.Namespace) -> tuple[Any, Any]:
    """(AppChecks or None, a Kube -> WebhookReceiver factory or None) from the flags
    and their environment variables. Secrets only ever come from files."""
    from devjobs.controller.checks import check_url_template
    from devjobs.controller.githubapp import AppChecks
    from devjobs.errors import DevjobsError
    from devjobs.github.app import GitHubApp
    from devjobs.resolver.files import repository_files

    app_id = args.github_app_id or os.environ.get(APP_ID_VARIABLE, "").strip() or None
    key_file = args.github_app_key_file or os.environ.get(APP_KEY_VARIABLE, "").strip() or None
    secret_file = (
        args.github_webhook_secret_file
        or os.environ.get(WEBHOOK_SECRET_VARIABLE, "").strip()
        or None
    )
    if app_id is None and args.github_app_key_file is None:
        # deploy/ sets the key and secret paths and the webhook address always; the App
        # is on only once the Secret devjobs-github-app (with its app-id) exists.
        if args.webhook_address:
            logging.getLogger("devjobs.controller").info(
                "no GitHub App configured: the webhook is not served"
            )
        return None, None
    if app_id is None or key_file is None:
        raise DevjobsError(
            "--github-app-id", "a GitHub App needs both its id and --github-app-key-file"
        )
    for template in (args.ui_url, args.target_url):
        if template:
            check_url_template(template)
    app = GitHubApp.from_key_file(app_id, key_file, api_url=args.github_api_url)
    cache_dir = args.cache_dir
    checks = AppChecks(
        app, api_url=args.github_api_url,
        repo_files=lambda url, commit: repository_files(url, commit, cache_dir),
    )  # fmt: skip
    if not args.webhook_address:
        return checks, None
    if secret_file is None:
        raise DevjobsError("--webhook-address", "needs --github-webhook-secret-file")
    try:
        secret = Path(secret_file).read_bytes().strip()
    except OSError as err:
        raise DevjobsError(
            str(secret_file), f"cannot read the webhook secret: {err.strerror}"
        ) from None
    namespace = args.leader_election_namespace or os.environ.get("POD_NAMESPACE") or "default"

    def receiver(kube: Any) -> Any:
        from devjobs.controller.webhook import ClusterReplayGuard
        from devjobs.github.webhook import WebhookReceiver

        guard = ClusterReplayGuard(kube, namespace)
        return WebhookReceiver(secret, guard, app_id=app.app_id)

    return checks, receiver


def _listen_addresses(
    args: argparse.Namespace,
) -> tuple[tuple[str, int] | None, tuple[str, int] | None, tuple[str, int] | None]:
    """The servers' addresses (`--ui-address`, `--webhook-address`,
    `--gate-webhook-address`), read before anything starts so a bad flag starts nothing."""
    from devjobs.cli.addresses import listen_address
    from devjobs.errors import DevjobsError

    if args.gate_webhook_address and (
        args.gate_webhook_cert is None or args.gate_webhook_key is None
    ):
        raise DevjobsError(
            "--gate-webhook-address", "needs --gate-webhook-cert and --gate-webhook-key (TLS)"
        )

    def read(text: str | None, option: str) -> tuple[str, int] | None:
        return listen_address(text, option) if text else None

    return (
        read(args.ui_address, "--ui-address"),
        read(args.webhook_address, "--webhook-address"),
        read(args.gate_webhook_address, "--gate-webhook-address"),
    )


def _stop_when(lost: threading.Event, stop: threading.Event) -> None:
    lost.wait()
    stop.set()
