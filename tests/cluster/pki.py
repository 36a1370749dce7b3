"""Credentials for a throwaway cluster: one CA, the serving and client certificates, SA keys.

EC P-256 keys made with the `openssl` CLI (always present on Debian, no Python dependency),
generated once per test session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.procs import run

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files; every component reads them from disk."""

    dir: Path
    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    apiserver_kubelet_client: CertPair
    sa_key: Path
    sa_pub: Path

    def client(self, name: str, cn: str, org: str | None = None) -> CertPair:
        """Issue another client certificate (the kubelet's `system:node:<name>` one)."""
        return _issue(self.dir, self.ca, name, cn, org)


def _issue(
    d: Path,
    ca: CertPair,
    name: str,
    cn: str,
    org: str | None,
    server_names: list[str] | None = None,
) -> CertPair:
    key, csr, crt, ext = (d / f"{name}{s}" for s in (".key", ".csr", ".crt", ".ext"))
    subj = (f"/O={org}" if org else "") + f"/CN={cn}"
    run(["openssl", "req", "-new", *_EC, "-keyout", str(key), "-subj", subj, "-out", str(csr)])
    lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
    if server_names is None:
        lines.append("extendedKeyUsage=clientAuth")
    else:
        lines.append("extendedKeyUsage=serverAuth")
        sans = [f"IP:{n}" if n[0].isdigit() else f"DNS:{n}" for n in server_names]
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    run(
        [
            "openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
            "-set_serial", "0x" + secrets.token_hex(16), "-days", "30", "-sha256",
            "-extfile", str(ext), "-out", str(crt),
        ]
    )  # fmt: skip
    csr.unlink()
    ext.unlink()
    return CertPair(crt, key)


def generate(d: Path, server_names: list[str]) -> Pki:
    """CA, apiserver serving cert for `server_names`, admin and apiserver->kubelet clients."""
    d.mkdir(parents=True, exist_ok=True)
    ca = CertPair(d / "ca.crt", d / "ca.key")
    run(
        [
            "openssl", "req", "-x509", *_EC, "-keyout", str(ca.key), "-out", str(ca.cert),
            "-subj", "/CN=devjobs-test-ca", "-days", "30", "-sha256",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )  # fmt: skip
    sa_key, sa_pub = d / "sa.key", d / "sa.pub"
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(sa_key)])
    run(["openssl", "ec", "-in", str(sa_key), "-pubout", "-out", str(sa_pub)])
    return Pki(
        dir=d,
        ca=ca,
        apiserver=_issue(d, ca, "apiserver", "kube-apiserver", None, server_names),
        admin=_issue(d, ca, "admin", "devjobs-admin", "system:masters"),
        apiserver_kubelet_client=_issue(
            d, ca, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
        ),
        sa_key=sa_key,
        sa_pub=sa_pub,
    )
