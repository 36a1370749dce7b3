"""Restart the test control plane's kube-apiserver in place, for fault tests.

The plugin's cluster is session-scoped and shared by every test, so the restart keeps
everything another test relies on: the same binary, flags, port, certificates and etcd
(its data is untouched), the same log file (appended to). It returns once /readyz is ok
again, so the cluster is healthy for the next test.
"""

from __future__ import annotations

import ssl
import time
import urllib.request

from tests.cluster.procs import Proc, wait_for


def restart_apiserver(down_seconds: float = 2.0, timeout: float = 60.0) -> float:
    """Stop kube-apiserver, keep it down `down_seconds`, start it again with the same
    argv and wait until it is ready. Returns the seconds it was unreachable."""
    from tests.cluster.plugin import _session

    cp = _session.control_plane
    if cp is None or cp.api is None or cp.api.pki is None:
        raise RuntimeError("restart_apiserver needs the plugin's own control plane")
    index = next(i for i, p in enumerate(cp.procs) if p.name == "kube-apiserver")
    old = cp.procs[index]
    t0 = time.monotonic()
    old.stop(timeout=10)
    time.sleep(down_seconds)
    new = Proc(old.name, old.argv, old.log_path)
    cp.procs[index] = new
    pki = cp.api.pki
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))

    def ready() -> bool:
        with urllib.request.urlopen(f"{cp.api.base_url}/readyz", context=ctx, timeout=2) as r:  # type: ignore[union-attr]
            return bool(r.status == 200)

    wait_for("kube-apiserver /readyz after a restart", ready, timeout, [new])
    return time.monotonic() - t0
