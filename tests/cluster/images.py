"""Container images built locally, never pulled: our pause program and a busybox-static rootfs.

Written as `docker save` archives (manifest.json + config + one uncompressed layer), which
`ctr -n k8s.io images import` accepts; tags are fully qualified and not `latest`, so pods
with `imagePullPolicy: IfNotPresent` never try a registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests.cluster.binaries import cache_root

HERE = Path(__file__).resolve().parent
PAUSE_IMAGE = "devjobs.test/pause:1"
TEST_IMAGE = "devjobs.test/busybox:1"
BUSYBOX = Path(os.environ.get("DEVJOBS_BUSYBOX", "/bin/busybox"))
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def go_binary() -> str:
    return os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"


def pause_binary() -> Path:
    """tests/cluster/pause/pause.go built static, cached by the source's hash."""
    src = HERE / "pause" / "pause.go"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = cache_root() / "pause" / digest / "pause"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run(
            [go_binary(), "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), str(src)],
            check=True,
            cwd=HERE / "pause",
            env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GO111MODULE": "off"},
        )
        tmp.rename(out)
    return out


def _layer(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    """A reproducible tar (fixed mtimes, root owner) so the image digest is stable."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti in entries:
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "root", "root"
            payload = data.get(ti.name)
            if payload is not None:
                ti.size = len(payload)
            tar.addfile(ti, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _dir(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, mode
    return ti


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, target, 0o777
    return ti


def write_archive(path: Path, ref: str, layer: bytes, config: dict[str, object]) -> Path:
    """A `docker save`-format archive of a one-layer image tagged `ref`."""
    layer_id = hashlib.sha256(layer).hexdigest()
    image_config = {
        "architecture": _ARCH,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/cluster/images.py"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{layer_id}/layer.tar"]}]
    files = {
        config_name: config_bytes,
        f"{layer_id}/layer.tar": layer,
        "manifest.json": json.dumps(manifest).encode(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        tar.addfile(_dir(layer_id))
        for name, payload in files.items():
            ti = _file(name)
            ti.size = len(payload)
            tar.addfile(ti, io.BytesIO(payload))
    return path


_ROOT_DIRS = ["dev", "etc", "proc", "sys", "root", "var", "bin"]
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def pause_image(path: Path) -> Path:
    """The sandbox image (containerd's `sandbox_image`): just /pause."""
    entries = [_file("pause", 0o755)]
    layer = _layer(entries, {"pause": pause_binary().read_bytes()})
    return write_archive(path, PAUSE_IMAGE, layer, {"Entrypoint": ["/pause"], "User": "0"})


def busybox_image(path: Path) -> Path:
    """The test image: busybox-static with every applet linked in /bin (sh, echo, sleep, ...)."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} missing: apt-get install busybox-static")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    entries = [_dir(d) for d in _ROOT_DIRS] + [_dir("tmp", 0o1777)]
    entries += [_file("etc/passwd"), _file("etc/group"), _file("bin/busybox", 0o755)]
    entries += [_symlink(f"bin/{a}", "busybox") for a in sorted(set(applets)) if a != "busybox"]
    data = {
        "etc/passwd": _PASSWD,
        "etc/group": _GROUP,
        "bin/busybox": BUSYBOX.read_bytes(),
    }
    config: dict[str, object] = {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"}
    return write_archive(path, TEST_IMAGE, _layer(entries, data), config)


# --- images the Catalyst operator names (tests/cluster/catalyst_operator.py) ----------

WEB_IMAGE = "devjobs.test/web:1"
"""A workload that serves HTTP: busybox `httpd -f -p 8080 -h /www` (`/www/index.html`)."""
WEB_PORT = 8080
STANDIN_BUILDER_IMAGE = "gcr.io/kaniko-project/executor:v1.20.0"
"""Catalyst's kaniko image name, here a stand-in (`standin_builder_image`): no kaniko."""
FAIL_BUILD_MARK = "# devjobs-test: fail-build"
"""A line of that exact text in the cloned Dockerfile makes the stand-in builder fail."""

_STANDIN_BUILDER = f"""#!/bin/sh
# devjobs test stand-in for the kaniko executor (tests/cluster/images.py): it builds and
# pushes nothing. It reads kaniko's own arguments, checks that the Dockerfile exists in
# the cloned context, and exits 1 when that Dockerfile holds the line
# '{FAIL_BUILD_MARK}', else 0.
ctx=. dockerfile=Dockerfile destination=
for arg in "$@"; do
    case "$arg" in
        --context=dir://*) ctx="${{arg#--context=dir://}}" ;;
        --context=*) ctx="${{arg#--context=}}" ;;
        --dockerfile=*) dockerfile="${{arg#--dockerfile=}}" ;;
        --destination=*) destination="${{arg#--destination=}}" ;;
    esac
done
case "$dockerfile" in
    /*) df="$dockerfile" ;;
    *) df="$ctx/$dockerfile" ;;
esac
echo "stand-in kaniko: context=$ctx dockerfile=$df destination=$destination"
if [ ! -f "$df" ]; then
    echo "stand-in kaniko: error: no Dockerfile at $df" >&2
    exit 2
fi
if grep -qxF '{FAIL_BUILD_MARK}' "$df"; then
    echo "stand-in kaniko: build failed: the Dockerfile asks for it ({FAIL_BUILD_MARK})" >&2
    exit 1
fi
echo "stand-in kaniko: built (nothing pushed) $destination"
"""


def _busybox_rootfs() -> tuple[list[tarfile.TarInfo], dict[str, bytes]]:
    """The test image's rootfs: busybox-static with every applet linked in /bin."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} missing: apt-get install busybox-static")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    entries = [_dir(d) for d in _ROOT_DIRS] + [_dir("tmp", 0o1777)]
    entries += [_file("etc/passwd"), _file("etc/group"), _file("bin/busybox", 0o755)]
    entries += [_symlink(f"bin/{a}", "busybox") for a in sorted(set(applets)) if a != "busybox"]
    data = {"etc/passwd": _PASSWD, "etc/group": _GROUP, "bin/busybox": BUSYBOX.read_bytes()}
    return entries, data


def web_command(root: str) -> str:
    """The workload's shell command: httpd serving `root`, exiting at once on SIGTERM
    (as PID 1 with no handler it would wait out the 30 s grace period)."""
    return f"trap 'exit 0' TERM; httpd -f -v -p {WEB_PORT} -h {root} & wait"


def web_image(path: Path, ref: str = WEB_IMAGE) -> Path:
    """A workload image: busybox httpd on port 8080 serving /www (index.html says `ok`)."""
    entries, data = _busybox_rootfs()
    entries += [_dir("www"), _file("www/index.html")]
    data["www/index.html"] = b"ok\n"
    config: dict[str, object] = {
        "Env": ["PATH=/bin"],
        "Cmd": ["sh", "-c", web_command("/www")],
        "WorkingDir": "/",
        "ExposedPorts": {f"{WEB_PORT}/tcp": {}},
    }
    return write_archive(path, ref, _layer(entries, data), config)


def standin_builder_image(path: Path) -> Path:
    """The stand-in for `gcr.io/kaniko-project/executor:v1.20.0`: busybox and
    `/kaniko/executor`, a script that checks the Dockerfile (see `_STANDIN_BUILDER`)."""
    entries, data = _busybox_rootfs()
    entries += [_dir("kaniko"), _file("kaniko/executor", 0o755)]
    data["kaniko/executor"] = _STANDIN_BUILDER.encode()
    config: dict[str, object] = {
        "Env": ["PATH=/bin"],
        "Entrypoint": ["/kaniko/executor"],
        "WorkingDir": "/workspace",
    }
    return write_archive(path, STANDIN_BUILDER_IMAGE, _layer(entries, data), config)


def retag_archive(src: Path, dst: Path, refs: list[str]) -> Path:
    """A copy of the `docker save` archive `src` whose image carries the tags `refs`
    instead (same config and layers, so the same image ID)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            payload = tin.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and payload is not None:
                manifest = json.loads(payload.read())
                manifest[0]["RepoTags"] = list(refs)
                body = json.dumps(manifest).encode()
                member.size = len(body)
                tout.addfile(member, io.BytesIO(body))
            else:
                tout.addfile(member, payload)
    return dst
