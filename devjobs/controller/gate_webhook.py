"""The PreDeploy gate's admission webhook over HTTPS (`--gate-webhook-address`).

`serve(host, port, cert, key, stop)` answers the API server's AdmissionReviews at
`PATH` with `kube.gate_admission.answer` on a daemon thread. Every replica serves it,
leader or not: an answer depends on the review alone, and the API server may call any
pod behind the Service. TLS is mandatory for admission webhooks; the certificate and key
are loaded again when their files change (`Certificate`), so a renewed Secret is served
without a restart. Each connection's TLS handshake happens on its own thread under the
handler's timeout, so a client that stalls holds only that thread, for at most
`Handler.timeout`. Requests are logged at debug level only: the API server calls this for
every new workload pod.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
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


def _load(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context of the PEM certificate (chain) and key; TLS 1.2 at least."""
    try:
        return _load(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise DevjobsError(
            "--gate-webhook-cert", f"cannot load {cert} and {key}: {error}"
        ) from None


CHECK_SECONDS = 1.0
"""How often, at most, a new connection looks whether the files changed."""

_Stamp = tuple[tuple[int, int, int, int], ...] | None


def _stamp(*paths: Path) -> _Stamp:
    """What identifies the files' contents: a mounted Secret is updated by swapping the
    `..data` symlink, so the file behind each path is a new inode; others rewrite in
    place, which changes the modification time or size."""
    try:
        found = [os.stat(p) for p in paths]
    except OSError:
        return None
    return tuple((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size) for s in found)


class Certificate:
    """The certificate and key being served, loaded again when their files change: after
    cert-manager renews the Secret, an old certificate would be served until it expired,
    and then every new workload pod refused. A pair that does not load (half written, or
    mismatched) leaves the one loaded before in use, with one warning per change."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._stamp = _stamp(cert, key)
        self._context = tls_context(cert, key)
        self._checked = time.monotonic()

    def context(self) -> ssl.SSLContext:
        """The context for a new connection (called by the accepting thread only)."""
        now = time.monotonic()
        if now - self._checked >= CHECK_SECONDS:
            self._checked = now
            stamp = _stamp(self.cert, self.key)
            if stamp != self._stamp:
                self._stamp = stamp  # a failure is not tried again until the next change
                try:
                    self._context = _load(self.cert, self.key)
                except (OSError, ssl.SSLError) as error:
                    log.warning(
                        "cannot load %s and %s, serving the certificate loaded before: %s",
                        self.cert,
                        self.key,
                        error,
                    )
                else:
                    log.info("PreDeploy gate webhook: loaded %s again", self.cert)
        return self._context


class _Server(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], certificate: Certificate) -> None:
        self.certificate = certificate
        super().__init__(address, Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept, and wrap in the current context; the handshake is the handler's."""
        connection, address = self.socket.accept()
        wrapped = self.certificate.context().wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake or a dropped connection is the client's business: debug,
        not a traceback on stderr."""
        log.debug("%s: connection failed", client_address, exc_info=True)


def serve(
    host: str, port: int, cert: Path, key: Path, stop: threading.Event
) -> ThreadingHTTPServer:
    """Serve on a daemon thread until `stop` is set; returns the server (its
    `server_address` has the port when `port` was 0)."""
    server = _Server((host, port), Certificate(cert, key))
    serve_until(server, stop, "gate-webhook")
    log.info("PreDeploy gate webhook on https://%s:%d%s", *server.server_address[:2], PATH)
    return server
