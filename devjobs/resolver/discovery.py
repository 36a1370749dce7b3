"""Finding a checkout's devcontainer.json, and reading files of an untrusted checkout.

Repositories are hostile: a config may be a symlink to `/etc/shadow`, a FIFO that
blocks `open()`, or a 2 GB file. Every file read from a checkout goes through
`read_checkout_file`, which refuses anything that resolves outside the checkout,
is not a regular file, or is larger than MAX_FILE_BYTES, before parsing it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from devjobs.errors import DevjobsError

MAX_FILE_BYTES = 1024 * 1024

PRIMARY = ".devcontainer/devcontainer.json"
ROOT = ".devcontainer.json"


def find_config(checkout: Path, *, chosen: str | None = None, place: str = "") -> str | None:
    """The config path relative to the checkout (POSIX), or None when there is none.

    Order: `.devcontainer/devcontainer.json`, `.devcontainer.json`, then the only
    `.devcontainer/<folder>/devcontainer.json`; several of the last kind are an error
    listing them unless `chosen` (relative to the checkout) picks one. `place` names
    where a choice came from (a CR field, `--config`) for errors.
    """
    where = place or str(checkout)
    try:
        if chosen is not None:
            return _chosen(checkout, chosen, where)
        return _discover(checkout, where)
    except OSError as error:
        raise DevjobsError(
            where, f"cannot look for a devcontainer config: {_reason(error)}"
        ) from None


def _discover(checkout: Path, where: str) -> str | None:
    for candidate in (PRIMARY, ROOT):
        if (checkout / candidate).is_file():
            return candidate
    folder = checkout / ".devcontainer"
    found = (
        sorted(
            f".devcontainer/{entry.name}/devcontainer.json"
            for entry in folder.iterdir()
            if (entry / "devcontainer.json").is_file()
        )
        if folder.is_dir()
        else []
    )
    if len(found) > 1:
        raise DevjobsError(
            where,
            f"several devcontainer configs and none chosen: {', '.join(found)}; "
            "choose one with devcontainer.path in the Project or --config NAME=PATH",
        )
    return found[0] if found else None


def _chosen(checkout: Path, chosen: str, where: str) -> str:
    path = PurePosixPath(chosen)
    if path.is_absolute() or not chosen.strip():
        raise DevjobsError(where, f"config path {chosen!r} must be relative to the checkout")
    relative = path.as_posix()
    if not (checkout / relative).is_file():
        raise DevjobsError(where, f"no devcontainer config at {relative}")
    return relative


def read_checkout_file(checkout: Path, relative: str, *, place: str | None = None) -> bytes:
    """The bytes of `checkout/relative`, refusing escapes, non-files and big files.

    Errors are placed at `place` (default: `relative`).
    """
    where = place or relative
    try:
        root = checkout.resolve(strict=True)
        target = (root / relative).resolve(strict=True)
    except FileNotFoundError:
        raise DevjobsError(where, "no such file") from None
    except (OSError, RuntimeError) as error:  # RuntimeError: symlink loop (Python 3.11)
        raise DevjobsError(where, f"cannot resolve: {_reason(error)}") from None
    if not target.is_relative_to(root):
        raise DevjobsError(where, f"resolves outside the checkout (to {target}); refused")
    try:
        descriptor = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as error:
        raise DevjobsError(where, f"cannot open: {_reason(error)}") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise DevjobsError(where, "not a regular file; refused")
        if status.st_size > MAX_FILE_BYTES:
            raise DevjobsError(where, _too_big(status.st_size))
        data = _read_at_most(descriptor, MAX_FILE_BYTES + 1)
    except OSError as error:
        raise DevjobsError(where, f"cannot read: {_reason(error)}") from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_FILE_BYTES:  # grew after fstat
        raise DevjobsError(where, _too_big(len(data)))
    return data


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(descriptor, min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _too_big(size: int) -> str:
    return f"larger than 1 MiB ({size} bytes); refused"


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error)
