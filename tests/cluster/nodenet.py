"""TCP forwarding across the tier-2 node's network boundary.

The node's network namespace and this machine's are joined only by the veth pair (host
side ``node.host_ip``, node side ``node.node_ip``). Pods have a default route via the CNI
bridge, so they reach the node's own addresses, ``node.node_ip`` included, and nothing
else: not this machine's loopback, not even ``node.host_ip`` (the node refuses to forward
pod traffic; see `tests/cluster/node.py`). So a server on this machine's loopback (the
test git servers, the API server) is reached through a `TcpForwarder`, which accepts on
an address the other side can reach and connects each connection to ``127.0.0.1:PORT``
here:

- `node.py` forwards ``host_ip:P -> 127.0.0.1:<apiserver>`` for kubelet (and hostNetwork
  pods);
- `NodePortForward(node, port)` listens on ``node_ip`` *inside* the node's network
  namespace and forwards to ``127.0.0.1:port`` here: pods and this machine use the same
  URL, ``forward.url(scheme, path)``.

The socket inside the node's namespace is made by a short-lived thread that enters it
with setns(2) (per thread: the rest of the process stays where it is); the connections
it accepts belong to that namespace, the ones to 127.0.0.1 to ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from typing import Any, Protocol

CLONE_NEWNET = 0x40000000


def listen(ip: str, netns_pid: int | None = None) -> socket.socket:
    """A TCP socket listening on (ip, a free port), in the network namespace of process
    `netns_pid` (None: ours)."""
    if netns_pid is None:
        return _listening_socket(ip)
    result: dict[str, Any] = {}

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/proc/{netns_pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            result["sock"] = _listening_socket(ip)
        except OSError as error:
            result["error"] = error
        finally:
            os.close(fd)

    thread = threading.Thread(target=make)  # ends here: its netns goes with it
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    sock: socket.socket = result["sock"]
    return sock


def _listening_socket(ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, 0))
    sock.listen(64)
    return sock


class TcpForwarder:
    """Accept on `listener`; pipe each connection to and from 127.0.0.1:`target_port`.

    A side that ends its stream cleanly is passed on as a half-close (the other direction
    keeps flowing); an error tears the connection down both ways.
    """

    def __init__(self, listener: socket.socket, target_port: int, name: str) -> None:
        self.sock = listener
        ip, port = listener.getsockname()[:2]
        self.ip: str = ip  # where it listens
        self.port: int = port
        self.target_port = target_port
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, name=name, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                if self._stopped:
                    return
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        with self._lock:
            self._conns.difference_update((client, upstream))
        client.close()
        upstream.close()

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.sock.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
    else:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class _StartedNode(Protocol):
    node_ip: str

    @property
    def netns_pid(self) -> int: ...


class NodePortForward(TcpForwarder):
    """``node_ip:port`` (in the node's network namespace) -> ``127.0.0.1:target_port``
    (ours): a loopback server here, reachable from the node's pods and from this machine
    at the same `url`."""

    def __init__(self, node: _StartedNode, target_port: int) -> None:
        listener = listen(node.node_ip, node.netns_pid)
        super().__init__(listener, target_port, f"devjobs-node-forward-{target_port}")

    def url(self, scheme: str, path: str = "") -> str:
        """``scheme://node_ip:port/path``: the URL pods (and this machine) use."""
        return f"{scheme}://{self.ip}:{self.port}/{path.lstrip('/')}"
