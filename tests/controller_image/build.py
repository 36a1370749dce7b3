"""Build the controller image from the repository's Dockerfile with a real Docker engine.

No image can be pulled, so the Dockerfile's BASE is built here: Debian 12 `minbase`
debootstrap'ed from deb.debian.org with python3, python3-venv, git and ca-certificates
(cached in ~/.cache/devjobs/controller-image/rootfs), trimmed (docs, man pages, locales,
apt lists) and `docker import`ed. Python dependencies come from a wheelhouse built on the
host with `pip wheel` (the host's pip settings and certificates apply), so the build
itself needs no network. The result is saved with `docker save`, which the node's
containerd imports (`ctr -n k8s.io images import`).

    python -m tests.controller_image.build OUT.tar      # uses a private engine
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.docker.engine import DockerEngine

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DEVJOBS_CACHE_DIR") or Path.home() / ".cache" / "devjobs")
ROOTFS = CACHE / "controller-image" / "rootfs"
BASE_IMAGE = "devjobs.local/debian-python:bookworm"
IMAGE = "devjobs.local/controller:test"
PACKAGES = "python3,python3-venv,git,ca-certificates"
MIRROR = "http://deb.debian.org/debian"
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
        "var/lib/apt/lists", "var/cache/apt", "var/cache/debconf")  # fmt: skip


def rootfs() -> Path:
    """The debootstrap'ed base (about 5 minutes the first time, then cached)."""
    if (ROOTFS / "usr" / "bin" / "python3").exists():
        return ROOTFS
    tmp = ROOTFS.with_name("rootfs.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(tmp), MIRROR],
        check=True, capture_output=True,
    )  # fmt: skip
    tmp.rename(ROOTFS)
    return ROOTFS


def _base_tar(work: Path) -> Path:
    out = work / "base.tar"
    excludes = [f"--exclude=./{path}/*" for path in TRIM]
    subprocess.run(
        ["tar", "-C", str(rootfs()), "--numeric-owner", *excludes, "-cf", str(out), "."],
        check=True,
    )
    return out


def _context(work: Path) -> Path:
    """pyproject, README, devjobs/ and a wheelhouse of every dependency."""
    context = work / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md", "Dockerfile", ".dockerignore"):
        shutil.copy2(REPO / name, context / name)
    shutil.copytree(REPO / "devjobs", context / "devjobs",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(context / "wheelhouse"),
         str(context), "setuptools>=68"],
        check=True, capture_output=True,
    )  # fmt: skip
    return context


def build(engine: DockerEngine, out: Path) -> Path:
    """Build IMAGE in `engine` and `docker save` it to `out`."""
    with tempfile.TemporaryDirectory(prefix="dj-image-") as tmp:
        work = Path(tmp)
        if engine.docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
            engine.docker("import", str(_base_tar(work)), BASE_IMAGE)
        context = _context(work)
        done = engine.docker(
            "build", "--network", "host", "-t", IMAGE, "--build-arg", f"BASE={BASE_IMAGE}",
            "--build-arg", "PIP_OPTS=--no-index --find-links /src/wheelhouse", str(context),
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"docker build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    engine.docker("save", "-o", str(out), IMAGE)
    return out


def source_digest() -> str:
    """What the image is built from, to reuse a saved image while nothing changed."""
    h = hashlib.sha256()
    for path in sorted(
        [
            REPO / "Dockerfile",
            REPO / "pyproject.toml",
            Path(__file__).resolve(),
            *REPO.glob("devjobs/**/*.py"),
        ]
    ):
        h.update(str(path.relative_to(REPO)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cached_build(engine_factory: type[DockerEngine] = DockerEngine) -> Path:
    """The saved image for the current sources, built (with a private engine) if needed."""
    out = CACHE / "controller-image" / f"controller-{source_digest()}.tar"
    if out.exists():
        return out
    engine = engine_factory()
    try:
        engine.start()
        tmp = out.with_suffix(".tmp")
        build(engine, tmp)
        tmp.rename(out)
    finally:
        engine.stop()
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    path = cached_build()
    if target:
        shutil.copy2(path, target)
    print(path)
