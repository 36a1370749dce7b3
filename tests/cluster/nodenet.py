"""Make a loopback server reachable from pods on the tier-2 node.

The node's network namespace has no route to this machine's loopback, and pods have no
default route at all (the CNI config gives them only the pod subnet, on-link): the one
address outside their own that they reach is the bridge's, the pod subnet's gateway
(10.244.0.1). `NodePortForward(node, port)` listens on all addresses of the node's
network namespace (the bridge's included, once the first pod created it) and forwards
each connection to `127.0.0.1:port` in ours: pods use `url(...)` (the gateway address);
this machine can use `host_url(...)` (the node's own address, on the veth).
The listening socket is created by a short-lived thread that enters the node's network
namespace with setns(2) (per thread; the rest of the process stays where it is).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from typing import Any

CLONE_NEWNET = 0x40000000


def pod_gateway() -> str:
    """The first address of the node's pod subnet: the CNI bridge's (isGateway)."""
    import ipaddress

    from tests.cluster.node import POD_CIDR

    return str(next(ipaddress.ip_network(POD_CIDR).hosts()))


def _socket_in_netns(pid: int, host: str) -> socket.socket:
    result: dict[str, Any] = {}

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result["error"] = OSError(err, os.strerror(err))
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            sock.listen(64)
            result["sock"] = sock
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


class NodePortForward:
    """node_ip:port (in the node's netns) -> 127.0.0.1:target_port (ours)."""

    def __init__(self, node: Any, target_port: int) -> None:
        assert node.holder is not None, "the node is not started"
        self.host = pod_gateway()
        self.node_ip = str(node.node_ip)
        self.target_port = target_port
        self.sock = _socket_in_netns(node.holder.pid, "0.0.0.0")
        self.port = int(self.sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, scheme: str, path: str = "") -> str:
        """The URL pods use."""
        return f"{scheme}://{self.host}:{self.port}/{path.lstrip('/')}"

    def host_url(self, scheme: str, path: str = "") -> str:
        """The URL this machine uses (the node's address on the veth)."""
        return f"{scheme}://{self.node_ip}:{self.port}/{path.lstrip('/')}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.sock.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                continue
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for s in self._conns:
            with contextlib.suppress(OSError):
                s.close()
