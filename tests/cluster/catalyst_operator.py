"""The real Catalyst operator, built from source and run against the test cluster.

Loaded as a pytest plugin by `tests/cluster/plugin.py`. Fixture:

``catalyst_operator`` (session, tier 2) -> :class:`CatalystOperator`
    Catalyst's own `manager` binary (built by `catalyst_build.sh` from
    ``DEVJOBS_CATALYST_SRC``, default ``../shared/catalyst/operator``, cached by the
    source's content), started out of cluster with the admin kubeconfig:
    ``manager --kubeconfig=K --health-probe-bind-address=0 --metrics-bind-address=0
    --zap-log-level=info``, after the Catalyst CRDs (``catalyst_crds``) are installed.
    Before it starts, the images the operator names are imported into the node under
    those exact names: the git image as ``alpine/git:2.45.2`` (also `GIT_CLONE_IMAGE`, so
    development mode uses it instead of its digest-pinned default), the stand-in builder
    as ``gcr.io/kaniko-project/executor:v1.20.0`` (`images.standin_builder_image`: checks
    the cloned Dockerfile, fails on the line ``images.FAIL_BUILD_MARK``; it builds
    nothing), and ``images.WEB_IMAGE``, a busybox httpd workload on port 8080.
    ``.import_web_image(ref)`` imports that workload under another name, e.g. the image a
    helm-mode build "pushes" (`devjobs.catalyst.build_image(...)`). ``.logs(n)``, ``.log_path``.

Once started it reconciles every Environment in the cluster that carries the three
hierarchy labels, until the session ends. Its log goes to
``<pytest tmp>/catalyst-operator*/manager.log``; a failing test that used it gets the last
lines in its report. When no source is found, the fixture fails (never skips) with
"set DEVJOBS_CATALYST_SRC to a Catalyst checkout's operator/ folder".
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import git_image, images
from tests.cluster.controlplane import KubeApi
from tests.cluster.procs import Proc, tail, wait_for

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "catalyst_build.sh"
INSTRUCTION = "set DEVJOBS_CATALYST_SRC to a Catalyst checkout's operator/ folder"
NO_SOURCE_EXIT = 3
LOG_LINES_IN_REPORT = 80

GIT_CLONE_IMAGE = "alpine/git:2.45.2"
"""The operator's build-Job clone image (`build_kaniko.go` gitCloneImage)."""
PREVIEW_DOMAIN = "preview.devjobs.test"


class OperatorSourceMissing(RuntimeError):
    pass


def _qualified(ref: str) -> str:
    """The name containerd stores for `ref` (Docker Hub names get `docker.io/`)."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref if '/' in ref else 'library/' + ref}"


def manager_binary() -> Path:
    """Build (or find in the cache) the operator; raise OperatorSourceMissing without source."""
    res = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True)
    if res.returncode == NO_SOURCE_EXIT:
        raise OperatorSourceMissing(f"{res.stderr.strip()}")
    if res.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


@dataclass
class CatalystOperator:
    """A running `manager` and what it needs on the node."""

    binary: Path
    log_path: Path
    node: Any
    workdir: Path
    proc: Proc | None = None
    start_seconds: float = 0.0
    _imported: set[str] = field(default_factory=set)

    def logs(self, lines: int = 200) -> str:
        return tail(self.log_path, lines)

    def import_web_image(self, ref: str) -> str:
        """Import the workload image (busybox httpd, port 8080) as `ref`; returns `ref`."""
        if ref not in self._imported:
            archive = self.workdir / f"web-{len(self._imported)}.tar"
            images.retag_archive(_web_archive(self.workdir), archive, [_qualified(ref)])
            self.node.import_image(archive)
            self._imported.add(ref)
        return ref

    def import_images(self) -> None:
        git = images.retag_archive(
            git_image.cached_archive(),
            self.workdir / "git.tar",
            [git_image.GIT_IMAGE, _qualified(GIT_CLONE_IMAGE)],
        )
        self.node.import_image(git)
        self.node.import_image(images.standin_builder_image(self.workdir / "builder.tar"))
        self.import_web_image(images.WEB_IMAGE)

    def start(self, kubeconfig: Path, timeout: float = 90.0) -> CatalystOperator:
        t0 = time.monotonic()
        home = self.workdir / "home"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        env = {
            "GIT_CLONE_IMAGE": GIT_CLONE_IMAGE,
            "PREVIEW_DOMAIN": PREVIEW_DOMAIN,
            "HELM_DRIVER": "secret",
            # Helm-mode chart clones and Helm's own files stay in the test's directory.
            "TMPDIR": str(home / "tmp"),
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
        }
        self.proc = Proc(
            "catalyst-operator",
            [
                str(self.binary),
                f"--kubeconfig={kubeconfig}",
                "--health-probe-bind-address=0",
                "--metrics-bind-address=0",
                "--zap-log-level=info",
            ],
            self.log_path,
            env=env,
        )
        wait_for(
            "the Catalyst operator's environment controller to start its workers",
            lambda: _workers_started(self.log_path),
            timeout,
            [self.proc],
            interval=0.2,
        )
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def _workers_started(log: Path) -> bool:
    """controller-runtime's line once the Environment controller reconciles."""
    for line in tail(log, 400).splitlines():
        if "Starting workers" in line and "environment" in line:
            return True
    return False


def _web_archive(workdir: Path) -> Path:
    path = workdir / "web-base.tar"
    if not path.exists():
        images.web_image(path)
    return path


_running: list[CatalystOperator] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the operator before the first test that needs it (about 5 minutes cold),
    with its progress visible; a missing source is reported by the fixture instead."""
    if os.environ.get("DEVJOBS_TIER2", "1").strip() == "0":
        return
    if not any("catalyst_operator" in getattr(i, "fixturenames", ()) for i in session.items):
        return
    capman = session.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        res = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.DEVNULL)
        if res.returncode not in (0, NO_SOURCE_EXIT):
            print(f"catalyst_build.sh failed ({res.returncode}); the operator tests will fail")


@pytest.fixture(scope="session")
def catalyst_operator(
    kube_api: KubeApi,
    kube_node: Any,
    catalyst_crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CatalystOperator]:
    if kube_api.external:
        pytest.fail(
            "the catalyst_operator fixture needs the test bed's own node (it imports the "
            "images the operator names); unset DEVJOBS_TEST_KUBECONFIG"
        )
    try:
        binary = manager_binary()
    except OperatorSourceMissing as e:
        pytest.fail(f"the real Catalyst operator cannot be built: {e}", pytrace=False)
    workdir = tmp_path_factory.mktemp("catalyst-operator")
    op = CatalystOperator(binary, workdir / "manager.log", kube_node, workdir)
    op.import_images()
    _running.append(op)
    try:
        yield op.start(kube_api.kubeconfig)
    finally:
        op.stop()
        _running.remove(op)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.failed and "catalyst_operator" in getattr(item, "fixturenames", ()):
        for op in _running:
            rep.sections.append(
                (
                    f"catalyst operator log (last {LOG_LINES_IN_REPORT} lines)",
                    op.logs(LOG_LINES_IN_REPORT),
                )
            )
    return rep
