"""The controller's HTTP servers (GitHub's webhook, the PreDeploy gate's) on threads.

Each serves on a daemon thread until the controller's `stop` is set, then closes its
socket, so a stopped controller (or a test) leaves no listener behind.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


def serve_until(server: ThreadingHTTPServer, stop: threading.Event, name: str) -> None:
    """Start `server` on a daemon thread named `name`; shut it down once `stop` is set."""
    threading.Thread(target=server.serve_forever, args=(0.2,), name=name, daemon=True).start()

    def stopper() -> None:
        stop.wait()
        server.shutdown()
        server.server_close()

    threading.Thread(target=stopper, name=f"{name}-stop", daemon=True).start()
