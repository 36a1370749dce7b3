"""The on-disk cache of fetched sources, shared by concurrent devjobs processes, and its
eviction.

Layout, per remote (`<key>` is `urls.cache_key`, a hash with no secret in it)::

    <cache>/git/.last-prune                     its mtime: when the whole cache was pruned
    <cache>/git/<key>/                          its mtime: when the remote was last used
    <cache>/git/<key>/lock                      flock: one writer of this remote at a time
    <cache>/git/<key>/repo/                     bare, partial (blob:none), shallow
    <cache>/git/<key>/trees/<sha>-<patterns>/   materialised checkouts, never modified

A checkout directory appears by atomic rename once complete, so a reader sees either
nothing or the whole tree; two plans racing on one commit both end up reading the
same directory.

Use. Each use sets the mtime of the checkout and of `<key>/` to now, so "least recently
used" means used, not created. A process also holds a shared `flock` on each checkout
it hands out, until it exits (a long-lived process, the controller, lets go of those
older than `GRACE_SECONDS` when it fetches again), and on `<key>/` while it fetches
(the repository is read without the remote's lock: `ls-remote`, `rev-parse`).

Eviction. A checkout is removed only under its remote's `lock`, only when unused for
`GRACE_SECONDS`, and only if `flock(LOCK_EX | LOCK_NB)` on it succeeds, i.e. nobody
holds it; it is renamed to `.tmp-evict-*` while that lock is held, then deleted (a
crash mid-way leaves a `.tmp-*` directory, which the next holder of the lock removes).
The race of a reader that found a checkout without the lock: the reader opens the
directory, takes its shared lock, then checks that the path still names the directory
it opened. If the evictor's rename came first, the check fails and the reader fetches
under the lock instead; if the reader's lock came first, the evictor's non-blocking
lock fails and it keeps the checkout. So a checkout in use is never removed, however
long the use (`devjobs run --local` runs jobs in one), and a checkout being built is a
`.tmp-*` directory that eviction never considers. The grace period is a second guard,
for readers that take no lock (older devjobs versions sharing the cache, which read
within seconds of finding a checkout). A whole remote goes the same way: its
`lock`, then exclusive locks on `<key>/` and on every checkout, rename, delete; a
process that was waiting for that `lock` sees the lock file replaced and locks anew.

Policy, from the environment on every fetch (0 means no limit):

- `DEVJOBS_CACHE_MAX_TREES` (20): checkouts kept per remote, most recently used first.
  A controller plans every pushed commit; the last 20 cover the branches in flight.
  The remote's repository is deleted (and started afresh by the next fetch: one
  commit's trees, no history) once it has fetched 10x this many commits, as nothing
  else removes the objects of evicted checkouts (gc is off). Then, as after a remote
  is evicted, a pinned abbreviated sha that is no branch tip needs its full sha again.
- `DEVJOBS_CACHE_MAX_AGE_DAYS` (30): a remote, or a checkout, unused this long goes.
- `DEVJOBS_CACHE_MAX_SIZE_MB` (none): total size on disk; least recently used
  checkouts go first, then whole remotes.

When. After a fetch that added a checkout, that remote's checkouts are pruned under the
lock the fetch holds (a listing of one small directory). Ages, repositories and the
size budget are checked over the whole cache at most once per `PRUNE_INTERVAL_SECONDS`
per cache directory (`.last-prune`), without waiting for a busy remote: a plan of an
unchanged remote adds the locks above and one `stat`, no directory walk. Eviction never
fails a plan: a failure is one warning on stderr, and a read-only cache (`.last-prune`
not writable) is left alone silently.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from devjobs.errors import DevjobsError

GRACE_SECONDS = 600.0
"""A checkout used this recently is never evicted."""
PRUNE_INTERVAL_SECONDS = 3600.0
"""The whole cache is pruned at most this often (per cache directory)."""
DEFAULT_MAX_TREES = 20
DEFAULT_MAX_AGE_DAYS = 30.0
REPO_COMMITS_PER_TREE = 10
"""A repository that fetched more than this many commits per kept checkout is reset."""

_DAY = 86400.0
_STAMP = ".last-prune"
_EVICTED = ".tmp-evict-"
_NOT_OURS = (errno.EACCES, errno.EPERM, errno.EROFS)


def default_cache_dir() -> Path:
    """`$DEVJOBS_CACHE_DIR`, else `$XDG_CACHE_HOME/devjobs`, else `~/.cache/devjobs`."""
    if explicit := os.environ.get("DEVJOBS_CACHE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "devjobs"


def warn(message: str) -> None:
    print(f"devjobs: warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Policy:
    """What the cache keeps; 0 (None for `max_bytes`) means no limit."""

    max_trees: int = DEFAULT_MAX_TREES
    max_age_days: float = DEFAULT_MAX_AGE_DAYS
    max_bytes: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Policy:
        """The defaults overridden by `DEVJOBS_CACHE_*`; a bad value is a warning."""
        env = os.environ if environ is None else environ
        trees = _env_number(env, "DEVJOBS_CACHE_MAX_TREES", DEFAULT_MAX_TREES, whole=True)
        days = _env_number(env, "DEVJOBS_CACHE_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS)
        size_mb = _env_number(env, "DEVJOBS_CACHE_MAX_SIZE_MB", 0.0)
        return cls(int(trees), days, int(size_mb * 1024 * 1024) or None)

    def max_age_seconds(self) -> float | None:
        return self.max_age_days * _DAY if self.max_age_days else None


def _env_number(env: Mapping[str, str], name: str, default: float, whole: bool = False) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = -1
    if not 0 <= value < float("inf"):
        kind = "a whole number" if whole else "a number"
        warn(f"ignoring {name}={text!r}: expected {kind} >= 0 (using {default:g})")
        return default
    return value


@dataclass
class Pruned:
    """What one pruning removed, and what failed."""

    checkouts: int = 0
    remotes: int = 0
    repositories: int = 0
    errors: list[str] = field(default_factory=list)

    def failed(self, err: BaseException) -> None:
        if isinstance(err, OSError) and err.strerror:
            where = f"{err.filename}: " if err.filename else ""
            self.errors.append(f"{where}{err.strerror}")
        else:
            self.errors.append(str(err))


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (not removed or replaced)."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _lock_dir(path: Path, operation: int) -> int | None:
    """Directory `path` open and flocked with `operation`; None if it is gone, was
    replaced while we waited, or (with LOCK_NB) someone else holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, operation)
        if _same_file(fd, path):
            return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _touch(path: Path) -> None:
    """Record a use; a cache we may not write is still read, just not bookkept."""
    with suppress(OSError):
        os.utime(path)


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return None


def disk_usage(path: Path) -> int:
    """Bytes on disk under `path`, as `du` counts them (symlinks not followed)."""
    try:
        entries = list(os.scandir(path))
        total = os.lstat(path).st_blocks * 512
    except OSError:  # gone, or unreadable: nothing we could remove either
        return 0
    for entry in entries:
        with suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                total += disk_usage(Path(entry.path))
            else:
                total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


def _remove(path: Path, fds: list[int], pruned: Pruned, temp_name: str) -> bool:
    """Rename `path` aside while its locks `fds` are held, then delete it."""
    aside = path.parent / f"{_EVICTED}{temp_name}-{os.urandom(4).hex()}"
    try:
        os.rename(path, aside)
    except OSError as err:
        pruned.failed(err)
        return False
    finally:
        for fd in fds:
            os.close(fd)
    shutil.rmtree(aside, ignore_errors=True)
    return True


class _Holds:
    """The shared locks this process holds on checkouts it handed out."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[Path, tuple[int, float]] = {}

    def take(self, path: Path) -> bool:
        """Hold checkout `path`; False if it is not (or no longer) there."""
        with self._mutex:
            held = self._held.get(path)
            if held is not None:
                self._held[path] = (held[0], time.monotonic())
                return True
        fd = _lock_dir(path, fcntl.LOCK_SH)
        if fd is None:
            return False
        with self._mutex:
            if path in self._held:  # another thread got there first
                os.close(fd)
            else:
                self._held[path] = (fd, time.monotonic())
        return True

    def release(self, older_than: float = 0.0) -> None:
        """Let go of checkouts taken (or last used) more than `older_than` seconds ago."""
        now = time.monotonic()
        with self._mutex:
            for path, (fd, taken) in list(self._held.items()):
                if now - taken >= older_than:
                    os.close(fd)
                    del self._held[path]


_HOLDS = _Holds()


def release_checkouts(older_than: float = 0.0) -> None:
    """Let other processes evict the checkouts this process handed out (all of them, or
    those not used for `older_than` seconds): for long-lived processes, and tests."""
    _HOLDS.release(older_than)


@dataclass(frozen=True)
class CheckoutInfo:
    path: Path
    used: float
    """mtime: when it was last used."""


class RemoteCache:
    """The cache directory of one remote repository."""

    def __init__(self, cache_dir: Path, key: str) -> None:
        self.root = cache_dir / "git" / key
        self.repo = self.root / "repo"
        self.trees = self.root / "trees"

    def checkout_dir(self, commit: str, patterns_key: str) -> Path:
        return self.trees / f"{commit}-{patterns_key}"

    @contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold this remote's lock (between threads and processes alike); with
        `wait=False`, yield False at once instead of waiting for another holder."""
        operation = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        while True:
            try:
                self.trees.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise DevjobsError(
                    "", f"cannot use cache directory {self.root}: {err.strerror}"
                ) from None
            try:
                fcntl.flock(fd, operation)
            except BlockingIOError:
                os.close(fd)
                yield False
                return
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.root / "lock"):
                break
            os.close(fd)  # the remote was evicted while we waited: lock its successor
        try:
            self._remove_leftovers()
            yield True
        finally:
            os.close(fd)

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold this remote while fetching from it, so that it is not evicted meanwhile,
        and record the use. Without a writable cache: no hold, `locked` will say why."""
        fd = None
        for _ in range(3):
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = _lock_dir(self.root, fcntl.LOCK_SH)
            except OSError:
                break
            if fd is not None:
                _touch(self.root)
                break
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)

    def use_checkout(self, path: Path) -> bool:
        """Hold checkout `path` for this process and record the use; False if absent."""
        for _ in range(3):  # it may be replaced (evicted, fetched again) between tries
            try:
                held = _HOLDS.take(path)
            except OSError:  # no flock here: the grace period is the only guard
                return path.is_dir()
            if held:
                _touch(path)
                return True
            if not path.is_dir():
                return False
        return False

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

    # Eviction: every method below expects the caller to hold `locked()`.

    def checkouts(self) -> list[CheckoutInfo]:
        """This remote's checkouts, most recently used first."""
        found = []
        try:
            entries = list(os.scandir(self.trees))
        except FileNotFoundError:
            return []
        for entry in entries:
            with suppress(OSError):
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                found.append(CheckoutInfo(Path(entry.path), entry.stat().st_mtime))
        return sorted(found, key=lambda c: c.used, reverse=True)

    def last_used(self) -> float:
        """When any process last used this remote: the mtime of its directory or of a
        checkout (not of `trees/`, which evicting a checkout changes too)."""
        times = [_mtime(self.root), *(c.used for c in self.checkouts())]
        return max((t for t in times if t is not None), default=0.0)

    def prune_checkouts(self, policy: Policy, now: float, pruned: Pruned) -> None:
        """Checkouts beyond the per-remote limit, or older than the age limit."""
        max_age = policy.max_age_seconds()
        for rank, checkout in enumerate(self.checkouts()):
            too_many = policy.max_trees and rank >= policy.max_trees
            too_old = max_age is not None and now - checkout.used > max_age
            if too_many or too_old:
                self.evict_checkout(checkout.path, now, pruned)

    def evict_checkout(self, path: Path, now: float, pruned: Pruned) -> bool:
        """Remove one checkout unless it was used within the grace period or is held."""
        used = _mtime(path)
        if used is None or now - used < GRACE_SECONDS:
            return False
        fd = _lock_dir(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if fd is None:
            return False
        if _remove(path, [fd], pruned, path.name[:40]):
            pruned.checkouts += 1
            return True
        return False

    def evict_remote(self, idle_seconds: float, now: float, pruned: Pruned) -> bool:
        """Remove the whole remote if unused for `idle_seconds` (at least the grace
        period) and neither fetched from nor holding a checkout in use."""
        if now - self.last_used() < max(idle_seconds, GRACE_SECONDS):
            return False
        fds: list[int] = []
        for path in [self.root, *(c.path for c in self.checkouts())]:
            fd = _lock_dir(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if fd is None:
                for held in fds:
                    os.close(held)
                return False
            fds.append(fd)
        if _remove(self.root, fds, pruned, self.root.name):
            pruned.remotes += 1
            return True
        return False

    def compact_repo(self, policy: Policy, pruned: Pruned) -> bool:
        """Start the repository afresh once it has fetched too many commits, unless a
        process is fetching from it. Checkouts do not need it."""
        if not policy.max_trees:
            return False
        try:
            fetched = len(os.listdir(self.repo / "refs" / "devjobs"))
        except FileNotFoundError:
            return False
        if fetched <= REPO_COMMITS_PER_TREE * policy.max_trees:
            return False
        fd = _lock_dir(self.root, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if fd is None:
            return False
        if _remove(self.repo, [fd], pruned, "repo"):
            pruned.repositories += 1
            return True
        return False


def prune_after_fetch(remote: RemoteCache, policy: Policy) -> None:
    """Prune one remote's checkouts after a fetch added one (its lock held); never raises."""
    pruned = Pruned()
    try:
        remote.prune_checkouts(policy, time.time(), pruned)
    except Exception as err:  # noqa: BLE001 - eviction must never fail a plan
        pruned.failed(err)
    _report(remote.root, pruned)


def _report(where: Path, pruned: Pruned) -> None:
    if pruned.errors:
        more = f" (and {len(pruned.errors) - 1} more)" if len(pruned.errors) > 1 else ""
        first = pruned.errors[0].replace(f"{where}/", "")
        warn(f"cache eviction in {where}: {first}{more}")


def remotes(cache_dir: Path) -> list[RemoteCache]:
    """Every remote in the cache."""
    try:
        entries = list(os.scandir(cache_dir / "git"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        RemoteCache(cache_dir, entry.name)
        for entry in sorted(entries, key=lambda e: e.name)
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
    ]


def prune(cache_dir: Path, policy: Policy, *, wait: bool = False) -> Pruned:
    """Apply `policy` to the whole cache. `wait=False` skips remotes another process
    holds the lock of (the automatic pass must not wait behind a fetch)."""
    pruned = Pruned()
    now = time.time()
    for leftover in (cache_dir / "git").glob(".tmp-*"):  # an evictor that died mid-way
        shutil.rmtree(leftover, ignore_errors=True)
    max_age = policy.max_age_seconds()
    for remote in remotes(cache_dir):
        try:
            with remote.locked(wait=wait) as got:
                if not got:
                    continue
                if max_age is not None and remote.evict_remote(max_age, now, pruned):
                    continue
                remote.prune_checkouts(policy, now, pruned)
                remote.compact_repo(policy, pruned)
        except Exception as err:  # noqa: BLE001 - one remote's failure must not stop the rest
            pruned.failed(err)
    if policy.max_bytes is not None:
        try:
            _fit_budget(cache_dir, policy.max_bytes, now, wait, pruned)
        except Exception as err:  # noqa: BLE001 - reported like the others
            pruned.failed(err)
    return pruned


def _fit_budget(cache_dir: Path, budget: int, now: float, wait: bool, pruned: Pruned) -> None:
    """Least recently used checkouts first, then whole remotes, until within `budget`."""
    everything = remotes(cache_dir)
    total = sum(disk_usage(remote.root) for remote in everything)
    candidates = sorted(
        ((c.used, remote, c.path) for remote in everything for c in remote.checkouts()),
        key=lambda candidate: candidate[0],
    )
    for _, remote, path in candidates:
        if total <= budget:
            return
        size = disk_usage(path)
        with remote.locked(wait=wait) as got:
            if got and remote.evict_checkout(path, now, pruned):
                total -= size
    for remote in sorted(everything, key=lambda r: r.last_used()):
        if total <= budget:
            return
        size = disk_usage(remote.root)
        with remote.locked(wait=wait) as got:
            if got and remote.evict_remote(GRACE_SECONDS, now, pruned):
                total -= size


def prune_if_due(cache_dir: Path, policy: Policy) -> None:
    """The whole-cache pass, at most once per `PRUNE_INTERVAL_SECONDS` per cache
    directory and by one process at a time; never raises."""
    stamp = cache_dir / "git" / _STAMP
    try:
        last = _mtime(stamp)
        if last is not None and time.time() - last < PRUNE_INTERVAL_SECONDS:
            return
        try:
            fd = os.open(stamp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(stamp, os.O_RDWR | os.O_CLOEXEC)
            created = False
    except OSError as err:
        if err.errno not in (*_NOT_OURS, errno.ENOENT):  # not ours to prune, or no cache
            warn(f"cache eviction in {cache_dir}: {err.strerror}")
        return
    pruned = Pruned()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Unless another process pruned since we looked:
        if created or time.time() - os.fstat(fd).st_mtime >= PRUNE_INTERVAL_SECONDS:
            os.utime(fd)  # first: a failing pass is retried in an hour, not every plan
            pruned = prune(cache_dir, policy)
    except BlockingIOError:
        pass  # another process is pruning right now
    except Exception as err:  # noqa: BLE001 - eviction must never fail a plan
        pruned.failed(err)
    finally:
        os.close(fd)
    _report(cache_dir, pruned)


@dataclass(frozen=True)
class RemoteInfo:
    key: str
    checkouts: int
    checkout_bytes: int
    repo_bytes: int
    last_used: float


def info(cache_dir: Path) -> list[RemoteInfo]:
    """Size and use of every remote in the cache (read without locks: a snapshot)."""
    found = []
    for remote in remotes(cache_dir):
        checkouts = remote.checkouts()
        found.append(
            RemoteInfo(
                key=remote.root.name,
                checkouts=len(checkouts),
                checkout_bytes=disk_usage(remote.trees),
                repo_bytes=disk_usage(remote.repo),
                last_used=remote.last_used(),
            )
        )
    return found
