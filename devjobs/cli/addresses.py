"""The `HOST:PORT` flags devjobs' servers listen on, read one way.

`devjobs ui --address` must be a loopback address: the local view carries the user's
kubeconfig. The controller's servers (`--ui-address`, `--webhook-address`,
`--gate-webhook-address`) run in a pod and may also say `:PORT`, every interface.
"""

from __future__ import annotations

import ipaddress

from devjobs.errors import DevjobsError

ALL_INTERFACES = "0.0.0.0"


def listen_address(text: str, option: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) or `:PORT` (every interface); `option` names the
    flag in errors. Port 0 asks for any free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise DevjobsError(option, f"{text!r} is not HOST:PORT or :PORT")
    return host.strip("[]") or ALL_INTERFACES, int(port)


def loopback_address(text: str, option: str) -> tuple[str, int]:
    """`listen_address`, refused unless the host is loopback (`localhost` included)."""
    host, port = listen_address(text, option)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise DevjobsError(option, f"{host} is not a loopback address")
    return ("127.0.0.1" if host == "localhost" else host), port
