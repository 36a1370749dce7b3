"""Running the Jobs view: a uvicorn server on a bound socket, on a thread or in the
foreground. `devjobs ui` calls `serve_local`; `devjobs controller --ui-address` is meant
to call `serve_cluster` (and tests and benches use `Running` directly).
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devjobs.ui.access import TokenReviewer
from devjobs.ui.app import Mode, Settings, create_app
from devjobs.ui.cluster import Kube, PlanResolver, Store, connect, default_resolver
from devjobs.ui.logs import LogHub
from devjobs.ui.security import own_hosts


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


@dataclass
class Running:
    """A started server: its URL (with the start token in local mode), store and hub."""

    kube: Kube
    mode: Mode
    host: str = "127.0.0.1"
    port: int = 0
    namespaces: Sequence[str] = ()
    resolver: PlanResolver | None = None
    project_namespace: str | None = "catalyst-system"
    cors_origins: tuple[str, ...] = ()
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self, sync_timeout: float = 30) -> Running:
        import uvicorn

        self.sock = bind(self.host, self.port)
        self.port = int(self.sock.getsockname()[1])
        self.settings = Settings(
            mode=self.mode, hosts=own_hosts(self.host, self.port), cors_origins=self.cors_origins
        )
        self.store = Store(
            self.kube, self.namespaces, resolver=self.resolver,
            project_namespace=self.project_namespace,
        )  # fmt: skip
        self.hub = LogHub(self.kube)
        reviewer = TokenReviewer(self.kube) if self.mode == "cluster" else None
        self.app = create_app(self.store, self.hub, self.settings, reviewer)
        self.store.start(self.stop)
        self.store.wait_synced(sync_timeout)
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=1,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
            name="devjobs-ui",
        )  # fmt: skip
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            self.stop.wait(0.05)
        return self

    @property
    def base_url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    @property
    def url(self) -> str:
        """What to open: locally, with the start token."""
        if self.mode == "local":
            return f"{self.base_url}/?token={self.settings.start_token.value}"
        return f"{self.base_url}/"

    def close(self) -> None:
        self.server.should_exit = True
        self.stop.set()
        self.thread.join(5)
        self.store.close()
        self.sock.close()


def serve_local(
    *,
    kubeconfig: Path | None,
    context: str | None,
    namespaces: Sequence[str],
    host: str,
    port: int,
    cors_origins: tuple[str, ...] = (),
    project_namespace: str | None = "catalyst-system",
) -> int:
    kube = connect(kubeconfig, context)
    where = ", ".join(namespaces) if namespaces else "all namespaces"
    print(f"devjobs ui: watching Environments in {where}", file=sys.stderr, flush=True)
    running = Running(
        kube, "local", host, port, namespaces, default_resolver(), project_namespace,
        cors_origins,
    ).start()  # fmt: skip
    print(f"devjobs ui: open {running.url}", flush=True)
    try:
        running.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
    return 0


def serve_cluster(
    kube: Kube, address: str, port: int, *, cors_origins: tuple[str, ...] = ()
) -> Running:
    """The in-cluster app (viewer tokens, TokenReview, SubjectAccessReview) on a thread."""
    return Running(
        kube, "cluster", address, port, (), default_resolver(), cors_origins=cors_origins
    ).start()
