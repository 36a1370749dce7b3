"""The clone init container's script: pinned, and run for real as a non-root user in a
root-owned, world-writable workspace (what an emptyDir mount point is)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devjobs.kube.podspec import RenderOptions
from devjobs.kube.render import render
from devjobs.kube.workspace import CLONE_SCRIPT
from devjobs.resolver.models import Trigger
from tests.render_fixtures import environment, standard_plan

PINNED = """\
set -eu
git config --global --add safe.directory '*'
if [ -n "${DEVJOBS_GIT_HELPER:-}" ]; then
  git config --global credential.helper "$DEVJOBS_GIT_HELPER"
fi
cd "$DEVJOBS_WORKSPACE"
git init -q .
git remote add origin "$DEVJOBS_REPOSITORY"
if git fetch -q --depth 1 origin "$DEVJOBS_REVISION"; then
  git checkout -q --detach FETCH_HEAD
else
  git fetch -q origin
  git checkout -q --detach "$DEVJOBS_REVISION"
fi
git log -1 --format='devjobs: checked out %H'
# Any user the job image runs as may write in its workspace: the clone's files and
# directories (not symlinks, which chmod would follow). Not the mount point: the
# emptyDir is writable by all already, and a non-root git image may not chmod it.
find . -mindepth 1 ! -type l -exec chmod a+rwX {} +
"""
NON_ROOT = 65532


def test_the_clone_container_runs_the_pinned_script() -> None:
    rendered = render(standard_plan(), environment(), RenderOptions(trigger=Trigger.POST_DEPLOY))
    clone = rendered.jobs[0].manifest["spec"]["template"]["spec"]["initContainers"][0]
    assert clone["name"] == "devjobs-clone"
    assert clone["command"] == ["/bin/sh", "-c", PINNED]
    assert CLONE_SCRIPT == PINNED


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory the non-root user can reach (pytest's tmp_path is under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="devjobs-clone-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own the mount point")
def test_a_non_root_git_image_clones_into_a_root_owned_mount_point(open_tmp: Path) -> None:
    tmp_path = open_tmp
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "app.sh").write_text("echo hi\n")
    (repo / "src" / "app.sh").chmod(0o644)
    os.symlink("/etc/hostname", repo / "link")  # chmod must not follow it
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "one")
    sha = _git(repo, "rev-parse", "HEAD")
    shutil.chown(tmp_path, NON_ROOT, NON_ROOT)  # the repository is readable by the user
    tmp_path.chmod(0o755)
    workspace = tmp_path / "workspace"  # the emptyDir: root's, mode 0777
    workspace.mkdir()
    workspace.chmod(0o777)
    home = tmp_path / "home"
    home.mkdir()
    shutil.chown(home, NON_ROOT, NON_ROOT)
    hostname_mode = os.stat("/etc/hostname").st_mode if os.path.exists("/etc/hostname") else 0

    done = subprocess.run(
        ["setpriv", f"--reuid={NON_ROOT}", f"--regid={NON_ROOT}", "--clear-groups",
         "/bin/sh", "-c", CLONE_SCRIPT],
        env={"PATH": os.environ["PATH"], "HOME": str(home), "DEVJOBS_REPOSITORY": str(repo),
             "DEVJOBS_REVISION": sha, "DEVJOBS_WORKSPACE": str(workspace)},
        capture_output=True, text=True,
        # Not the checkout's directory, which that user may not be able to stat (a clone
        # under a private `mktemp -d` folder): git would fail before cloning anything.
        cwd=home,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert f"devjobs: checked out {sha}" in done.stdout
    assert stat.S_IMODE(workspace.stat().st_mode) == 0o777  # untouched
    assert workspace.stat().st_uid == 0
    app = workspace / "src" / "app.sh"
    assert stat.S_IMODE(app.stat().st_mode) == 0o666  # any job user may write it
    assert stat.S_IMODE((workspace / "src").stat().st_mode) == 0o777
    assert app.stat().st_uid == NON_ROOT
    if hostname_mode:
        assert os.stat("/etc/hostname").st_mode == hostname_mode
