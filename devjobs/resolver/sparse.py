"""The few paths of a commit devjobs needs, and writing them out of a hostile repository.

Patterns are anchored at the repository root: `dir/` selects the whole subtree of
`dir`, anything else one exact path; `*`, `?` and `[...]` match within one path
component (as in a shell, never across `/`). No patterns at all select the whole tree
(a full checkout, e.g. for `run --local`). Files are written into a fresh directory
that nothing else touches: regular files with O_EXCL|O_NOFOLLOW, symbolic links last
and only when their target stays inside the checkout, so nothing is ever written
through a link and a reader following one never leaves the checkout. Submodules
(gitlinks) are not followed.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from devjobs.errors import DevjobsError

MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_GITLINK = "160000"

MAX_FILES = 10_000
MAX_BYTES = 64 * 1024 * 1024
"""Limits on what one checkout materialises: the planner reads a handful of small files."""

_GLOB = frozenset("*?[")


@dataclass(frozen=True)
class Entry:
    """One blob of a commit's tree, as `git ls-tree -r` reports it."""

    mode: str
    oid: str
    path: str


def check_patterns(patterns: Iterable[str], place: str) -> tuple[str, ...]:
    """Validated patterns, de-duplicated and sorted (the order does not matter)."""
    checked = set()
    for pattern in patterns:
        parts = pattern.removesuffix("/").split("/")
        if (
            not pattern
            or pattern.startswith("/")
            or any(part in ("", ".", "..") for part in parts)
            or any(ord(ch) < 0x20 or ch == "\x7f" for ch in pattern)
        ):
            raise DevjobsError(
                place, f"path {pattern!r} must be relative to the repository root, without '..'"
            )
        checked.add(pattern)
    return tuple(sorted(checked))


def patterns_key(patterns: Sequence[str]) -> str:
    """A short name for a set of patterns, part of a checkout's directory name."""
    return hashlib.sha256("\0".join(patterns).encode()).hexdigest()[:16]


def pathspecs(patterns: Sequence[str]) -> list[str]:
    """Literal path prefixes covering the patterns, to narrow `git ls-tree`; [] means all."""
    specs = []
    for pattern in patterns:
        literal = []
        for part in pattern.removesuffix("/").split("/"):
            if _GLOB & set(part):
                break
            literal.append(part)
        if not literal:
            return []
        specs.append("/".join(literal))
    return specs


def selected(path: str, patterns: Sequence[str]) -> bool:
    """Whether a repository path is matched by any pattern (or there are none)."""
    if not patterns:
        return True
    parts = path.split("/")
    for pattern in patterns:
        is_dir = pattern.endswith("/")
        wanted = pattern.removesuffix("/").split("/")
        if len(parts) < len(wanted) or (not is_dir and len(parts) != len(wanted)):
            continue
        if is_dir and len(parts) == len(wanted):
            continue  # `dir/` selects what is inside dir, and a blob is no directory
        if all(fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=False)):
            return True
    return False


def _safe_parts(path: str) -> list[str]:
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.lower() == ".git" or "\0" in p for p in parts):
        raise DevjobsError("", f"the repository holds an unsafe path {path!r}")
    return parts


def _ensure_dir(root: Path, parts: Sequence[str]) -> Path:
    """Create each directory below root, refusing anything that is not a plain directory."""
    current = root
    for part in parts:
        current = current / part
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if not current.is_dir() or current.is_symlink():
                raise DevjobsError(
                    "", f"the repository holds conflicting paths at {part!r}"
                ) from None
    return current


def symlink_stays_inside(path: str, target: str) -> bool:
    """Whether a link at `path` pointing to `target` resolves (lexically) inside the root."""
    if not target or target.startswith("/") or "\0" in target:
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved != ".." and not resolved.startswith("../") and not resolved.startswith("/")


def write_tree(
    root: Path, entries: Sequence[Entry], blobs: Mapping[str, bytes], *, limited: bool = True
) -> None:
    """Write the entries' blobs below `root` (a fresh, empty directory).

    `limited` applies MAX_FILES and MAX_BYTES: a plan reads a few small files, and a
    hostile repository must not fill the disk through it. A full checkout is unlimited.
    """
    if limited and len(entries) > MAX_FILES:
        raise DevjobsError("", f"the selected paths hold more than {MAX_FILES} files")
    size = sum(len(blobs[e.oid]) for e in entries if e.mode != MODE_GITLINK)
    if limited and size > MAX_BYTES:
        raise DevjobsError("", f"the selected paths hold more than {MAX_BYTES >> 20} MiB")
    links = []
    for entry in entries:
        parts = _safe_parts(entry.path)
        if entry.mode == MODE_GITLINK:
            continue
        if entry.mode == MODE_SYMLINK:
            links.append((entry, parts))
            continue
        parent = _ensure_dir(root, parts[:-1])
        mode = 0o755 if entry.mode == MODE_EXECUTABLE else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(parent / parts[-1], flags, mode)
        except FileExistsError:
            raise DevjobsError("", f"the repository holds {entry.path!r} twice") from None
        with os.fdopen(fd, "wb") as out:
            out.write(blobs[entry.oid])
    for entry, parts in links:
        target = blobs[entry.oid].decode("utf-8", "surrogateescape")
        if not symlink_stays_inside(entry.path, target):
            continue  # left out: the reader then reports the file as missing
        parent = _ensure_dir(root, parts[:-1])
        try:
            os.symlink(target, parent / parts[-1])
        except FileExistsError:
            raise DevjobsError("", f"the repository holds {entry.path!r} twice") from None
    _drop_escaping_links(root, [entry.path for entry, _ in links])


def _drop_escaping_links(root: Path, paths: Sequence[str]) -> None:
    """Remove links whose physical resolution leaves root (`up -> ..` then `x -> up/..`).

    The lexical check cannot see a `..` applied after another link; resolving the
    written tree can. Removing a link only makes others dangle, so repeat until none go.
    """
    real_root = os.path.realpath(root)
    remaining = [p for p in paths if os.path.islink(root / p)]
    removed = True
    while removed:
        removed = False
        for path in list(remaining):
            resolved = os.path.realpath(root / path)
            if resolved != real_root and not resolved.startswith(real_root + os.sep):
                os.unlink(root / path)
                remaining.remove(path)
                removed = True
