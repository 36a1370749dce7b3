"""Where the cluster's binaries come from: an override directory, or the versioned cache.

`DEVJOBS_K8S_BIN` or `KUBEBUILDER_ASSETS` (the envtest convention) name a directory of
binaries someone already has; anything not found there comes from
`~/.cache/devjobs/k8s/<version>/bin`, built by build.sh (once, ~30 min cold) when missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

K8S_VERSION = os.environ.get("DEVJOBS_K8S_VERSION", "v1.36.3")
HERE = Path(__file__).resolve().parent
ALL = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")


def cache_root() -> Path:
    """Same rule as build.sh: DEVJOBS_CACHE_DIR, else $XDG_CACHE_HOME/devjobs, else ~/.cache."""
    if d := os.environ.get("DEVJOBS_CACHE_DIR"):
        return Path(d)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "devjobs"


def cache_bin_dir() -> Path:
    return cache_root() / "k8s" / K8S_VERSION / "bin"


def _override_dirs() -> list[Path]:
    return [Path(d) for v in ("DEVJOBS_K8S_BIN", "KUBEBUILDER_ASSETS") if (d := os.environ.get(v))]


def missing(names: tuple[str, ...] = ALL) -> list[str]:
    """The binaries that neither an override dir nor the cache has."""
    return [n for n in names if _locate(n) is None]


def _locate(name: str) -> Path | None:
    for d in [*_override_dirs(), cache_bin_dir()]:
        if os.access(d / name, os.X_OK):
            return d / name
    return None


def find(names: tuple[str, ...] = ALL, build: bool = True) -> dict[str, Path]:
    """Path of each binary; run build.sh if one is in neither an override dir nor the cache."""
    found: dict[str, Path] = {}
    for name in names:
        if (path := _locate(name)) is not None:
            found[name] = path
    absent = [n for n in names if n not in found]
    if absent and build:
        print(
            f"devjobs: building {', '.join(absent)} {K8S_VERSION} into {cache_bin_dir()} "
            "(once; about 9 minutes on 2 cores); see tests/cluster/README.md",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(["bash", str(HERE / "build.sh")], check=True, stdout=sys.stderr)
        return find(names, build=False)
    if absent:
        raise FileNotFoundError(f"no {', '.join(absent)} in {_override_dirs()} or the cache")
    return found
