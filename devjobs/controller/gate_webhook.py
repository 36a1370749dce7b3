"""The PreDeploy gate's admission webhook over HTTPS (`--gate-webhook-address`).

`serve(host, port, cert, key, stop)` answers the API server's AdmissionReviews at
`PATH` with `kube.gate_admission.answer` on a daemon thread. Every replica serves it,
leader or not: an answer depends on the review alone, and the API server may call any
pod behind the Service. TLS is mandatory for admission webhooks; the certificate and key
are read once at start (a renewed certificate needs a restart). Each connection's TLS
handshake happens on its own thread under the handler's timeout, so a client that stalls
holds only that thread, for at most `Handler.timeout`. Requests are logged at debug level
only: the API server calls this for every new workload pod.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devjobs.controller.serving import serve_until
from devjobs.errors import DevjobsError
from devjobs.kube.gate_admission import MAX_BODY, answer

PATH = "/predeploy-gate"
"""Where the API server posts reviews (`deploy/predeploy-gate-webhook/webhook.yaml`'s path)."""

log = logging.getLogger("devjobs.controller.gate_webhook")


class Handler(BaseHTTPRequestHandler):
    """POST `PATH`: an AdmissionReview in, its answer out; anything else is refused."""

    protocol_version = "HTTP/1.1"
    timeout = 10  # the API server's own timeout is at most 30s; a stalled client, less

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0] != PATH:  # the API server adds ?timeout=
            self._send(404, {"error": f"not {PATH}"})
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._send(411, {"error": "a Content-Length is required"})
            return
        if int(length) > MAX_BODY:
            self._send(413, {"error": f"larger than {MAX_BODY} bytes"})
            return
        found = answer(self.rfile.read(int(length)))
        log.debug("%s: %s", self.address_string(), found.outcome)
        self._send(found.status, found.body)

    def _not_allowed(self) -> None:
        self._send(405, {"error": "only POST"})

    do_GET = _not_allowed
    do_PUT = _not_allowed
    do_PATCH = _not_allowed
    do_DELETE = _not_allowed


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake or a dropped connection is the client's business: debug,
        not a traceback on stderr."""
        log.debug("%s: connection failed", client_address, exc_info=True)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context of the PEM certificate (chain) and key; TLS 1.2 at least."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise DevjobsError(
            "--gate-webhook-cert", f"cannot load {cert} and {key}: {error}"
        ) from None
    return context


def serve(
    host: str, port: int, cert: Path, key: Path, stop: threading.Event
) -> ThreadingHTTPServer:
    """Serve on a daemon thread until `stop` is set; returns the server (its
    `server_address` has the port when `port` was 0)."""
    context = tls_context(cert, key)
    server = _Server((host, port), Handler)
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    serve_until(server, stop, "gate-webhook")
    log.info("PreDeploy gate webhook on https://%s:%d%s", *server.server_address[:2], PATH)
    return server
