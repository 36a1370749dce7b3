"""A small git image for the clone init container, built from this machine's git.

No registry is reachable, so `alpine/git` (devjobs' default clone image) cannot be pulled
on the test node. This builds `devjobs.test/git:1` instead: the host's `/usr/bin/git`,
the git-core helpers a clone needs (`git-remote-http(s)`), exactly the shared libraries
`ldd` lists for them, busybox-static for `/bin/sh` and the coreutils the clone script
calls (chmod), git's templates and the CA bundle. The archive is cached by the digest of
its inputs; `import_into(node)` loads it into the node's containerd the same way
`node.py` loads the busybox image.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.cluster import images
from tests.cluster.binaries import cache_root

GIT_IMAGE = "devjobs.test/git:1"
GIT = Path("/usr/bin/git")
GIT_CORE = Path("/usr/lib/git-core")
HELPERS = ("git-remote-http", "git-remote-https")
TEMPLATES = Path("/usr/share/git-core/templates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _libraries(binaries: list[Path]) -> list[Path]:
    """The shared objects `ldd` lists for `binaries` (the loader included), sorted."""
    found: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            match = re.search(r"(/\S+) \(0x", line)
            if match:
                found.add(Path(match.group(1)))
    return sorted(found)


def _inputs() -> list[Path]:
    return [GIT, *(GIT_CORE / h for h in HELPERS if (GIT_CORE / h).exists())]


def _parents(path: str, dirs: dict[str, tarfile.TarInfo]) -> None:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in dirs:
            dirs[d] = images._dir(d, 0o1777 if d == "tmp" else 0o755)


def build(path: Path) -> Path:
    """Write the image archive (docker save format) to `path`."""
    if not GIT.exists():
        raise FileNotFoundError(f"{GIT} missing: apt-get install git")
    if not images.BUSYBOX.exists():
        raise FileNotFoundError(f"{images.BUSYBOX} missing: apt-get install busybox-static")
    dirs: dict[str, tarfile.TarInfo] = {}
    files: dict[str, tarfile.TarInfo] = {}
    links: dict[str, tarfile.TarInfo] = {}
    data: dict[str, bytes] = {}

    def add_file(name: str, source: Path, mode: int) -> None:
        _parents(name, dirs)
        files[name] = images._file(name, mode)
        data[name] = source.read_bytes()

    def add_link(name: str, target: str) -> None:
        _parents(name, dirs)
        links[name] = images._symlink(name, target)

    for d in ("dev", "proc", "sys", "root", "etc", "tmp", "usr/bin", "bin"):
        _parents(f"{d}/x", dirs)
    add_file("usr/bin/git", GIT, 0o755)
    add_link("bin/git", "/usr/bin/git")
    for helper in HELPERS:
        source = GIT_CORE / helper
        if source.exists():
            add_file(f"usr/lib/git-core/{helper}", source.resolve(), 0o755)
    for lib in _libraries(_inputs()):
        real = lib.resolve()
        add_file(str(real).lstrip("/"), real, 0o755)
        if lib != real:  # /lib64/ld-linux..., /lib/x86_64-linux-gnu/... (merged /usr)
            add_link(str(lib).lstrip("/"), str(real))
    add_file("bin/busybox", images.BUSYBOX, 0o755)
    applets = subprocess.run(
        [str(images.BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        add_link(f"bin/{applet}", "busybox")
    for dirpath, _dirnames, filenames in os.walk(TEMPLATES):
        rel = Path(dirpath).relative_to("/")
        _parents(f"{rel}/x", dirs)
        for f in sorted(filenames):
            add_file(f"{rel}/{f}", Path(dirpath) / f, 0o644)
    if CA_BUNDLE.exists():
        add_file("etc/ssl/certs/ca-certificates.crt", CA_BUNDLE, 0o644)
    _parents("etc/passwd", dirs)
    for name, content in (("etc/passwd", images._PASSWD), ("etc/group", images._GROUP)):
        files[name] = images._file(name, 0o644)
        data[name] = content
    entries = [dirs[k] for k in sorted(dirs)] + [files[k] for k in sorted(files)]
    entries += [links[k] for k in sorted(links)]
    config: dict[str, object] = {
        "Env": ["PATH=/usr/bin:/bin", "GIT_EXEC_PATH=/usr/lib/git-core"],
        "Cmd": ["git", "--version"],
        "WorkingDir": "/",
    }
    return images.write_archive(path, GIT_IMAGE, images._layer(entries, data), config)


def cached_archive() -> Path:
    """The archive, rebuilt only when git, its helpers, libraries or busybox change."""
    digest = hashlib.sha256()
    for p in [*_inputs(), *_libraries(_inputs()), images.BUSYBOX, Path(__file__)]:
        st = p.resolve().stat()
        digest.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    out = cache_root() / "images" / f"git-{digest.hexdigest()[:16]}.tar"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        build(tmp)
        tmp.rename(out)
    return out


def import_into(node: Any) -> str:
    """Import the git image into the tier-2 node's containerd; returns its reference."""
    node.import_image(cached_archive())
    return GIT_IMAGE
