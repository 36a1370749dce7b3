"""The on-disk cache of fetched sources, shared by concurrent devjobs processes.

Layout, per remote (`<key>` is `urls.cache_key`, a hash with no secret in it)::

    <cache>/git/<key>/lock                      flock: one fetch into repo at a time
    <cache>/git/<key>/repo/                     bare, partial (blob:none), shallow
    <cache>/git/<key>/trees/<sha>-<patterns>/   materialised checkouts, never modified

A checkout directory appears by atomic rename once complete, so a reader sees either
nothing or the whole tree; two plans racing on one commit both end up reading the
same directory.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devjobs.errors import DevjobsError


def default_cache_dir() -> Path:
    """`$DEVJOBS_CACHE_DIR`, else `$XDG_CACHE_HOME/devjobs`, else `~/.cache/devjobs`."""
    if explicit := os.environ.get("DEVJOBS_CACHE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "devjobs"


class RemoteCache:
    """The cache directory of one remote repository."""

    def __init__(self, cache_dir: Path, key: str) -> None:
        self.root = cache_dir / "git" / key
        self.repo = self.root / "repo"
        self.trees = self.root / "trees"

    def checkout_dir(self, commit: str, patterns_key: str) -> Path:
        return self.trees / f"{commit}-{patterns_key}"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this remote's lock (between threads and processes alike)."""
        try:
            self.trees.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise DevjobsError(
                "", f"cannot use cache directory {self.root}: {err.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._remove_leftovers()
            yield
        finally:
            os.close(fd)

    def _remove_leftovers(self) -> None:
        """Temporary directories of a process that died mid-way (only ever made under lock)."""
        for leftover in (*self.trees.glob(".tmp-*"), *self.root.glob(".tmp-*")):
            shutil.rmtree(leftover, ignore_errors=True)

    def temp_dir(self, parent: Path) -> Path:
        """A fresh directory to build something in before renaming it into place."""
        path = parent / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
        path.mkdir(mode=0o755)
        return path

    @staticmethod
    def publish(built: Path, final: Path) -> None:
        """Rename a completed directory into place; if another process won, keep theirs."""
        try:
            os.rename(built, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(built, ignore_errors=True)
