"""Eviction from the cache of fetched sources: real git servers, real files, real locks.

Time is moved with `os.utime` (an hour-old checkout is one whose mtime says so), never
by sleeping. A test's own fetches hold their checkouts like any devjobs process does;
`release_checkouts()` stands for that process having exited.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devjobs.cli import main
from devjobs.resolver.cache import (
    Policy,
    Pruned,
    RemoteCache,
    disk_usage,
    prune,
    release_checkouts,
)
from devjobs.resolver.git import Checkout
from devjobs.resolver.urls import cache_key
from tests import test_git_fetch
from tests.gitserver import GitDaemon, GitHttpServer, RepoRoot, WorkRepo
from tests.test_git_fetch import fetch_one

# The fetch tests' repository and isolation from the machine's git config and cache.
app = test_git_fetch.app
isolated_git = test_git_fetch.isolated_git

HOUR = 3600.0
DAY = 86400.0


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def url(app: WorkRepo, git_daemon: GitDaemon) -> str:
    """The URL of the fetch tests' repository, served by git daemon."""
    return git_daemon.url("app")


@pytest.fixture(autouse=True)
def no_holds_left() -> Iterator[None]:
    """Each test starts and ends like a fresh process: holding no checkout."""
    release_checkouts()
    yield
    release_checkouts()


def new_commits(repo: WorkRepo, count: int) -> list[str]:
    shas = []
    for n in range(count):
        repo.write(".devcontainer.json", json.dumps({"n": n}))
        shas.append(repo.commit(f"change {n}"))
    return shas


def fetch_commit(url: str, cache: Path, sha: str) -> Checkout:
    """A plan pinned at `sha`, by a process that then exits."""
    checkout = fetch_one(url, cache, branch=None, commit=sha)
    release_checkouts()
    return checkout


def remote_of(cache: Path, url: str) -> RemoteCache:
    return RemoteCache(cache, cache_key(url))


def kept(cache: Path, url: str) -> set[str]:
    """The commits of the remote's checkouts."""
    return {c.path.name.split("-")[0] for c in remote_of(cache, url).checkouts()}


def checkout_of(cache: Path, url: str, sha: str) -> Path:
    (path,) = (c.path for c in remote_of(cache, url).checkouts() if c.path.name.startswith(sha))
    return path


def set_used(path: Path, seconds_ago: float) -> None:
    stamp = time.time() - seconds_ago
    os.utime(path, (stamp, stamp))


def set_remote_used(remote: RemoteCache, seconds_ago: float) -> None:
    for path in [remote.root, remote.trees, *(c.path for c in remote.checkouts())]:
        set_used(path, seconds_ago)


def last_prune(cache: Path) -> Path:
    return cache / "git" / ".last-prune"


def test_tree_limit_keeps_the_most_recently_used_checkouts(
    app: WorkRepo, url: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVJOBS_CACHE_MAX_TREES", "2")
    c1, c2, c3, c4 = new_commits(app, 4)
    checkouts = {sha: fetch_commit(url, cache, sha) for sha in (c1, c2, c3)}
    for hours, sha in enumerate((c3, c2, c1), start=1):  # created c1 first, c3 last
        set_used(checkouts[sha].path, hours * HOUR)
    fetch_commit(url, cache, c1)  # used again: now the most recently used of the three

    fetch_commit(url, cache, c4)  # a new checkout: this remote is pruned to 2

    assert kept(cache, url) == {c1, c4}
    assert not list(remote_of(cache, url).trees.glob(".tmp-*"))
    again = fetch_commit(url, cache, c2)  # an evicted commit is simply fetched again
    assert (again.path / ".devcontainer.json").read_text() == '{"n": 1}'


def test_checkouts_used_within_the_grace_period_are_kept_beyond_the_limit(
    app: WorkRepo, url: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVJOBS_CACHE_MAX_TREES", "1")
    c1, c2, c3, c4 = new_commits(app, 4)
    for sha in (c1, c2, c3):
        fetch_commit(url, cache, sha)
    assert kept(cache, url) == {c1, c2, c3}  # all used in the last 10 minutes

    set_used(checkout_of(cache, url, c1), 11 * 60)
    set_used(checkout_of(cache, url, c2), 9 * 60)

    fetch_commit(url, cache, c4)

    assert kept(cache, url) == {c2, c3, c4}


def test_a_checkout_held_by_another_process_is_never_removed(
    app: WorkRepo, url: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVJOBS_CACHE_MAX_TREES", "1")
    c1, c2, c3 = new_commits(app, 3)
    fetch_commit(url, cache, c1)
    reader = subprocess.Popen(  # another devjobs process, still using its checkout
        [sys.executable, "-c", READER, url, str(cache), c1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        path = Path(reader.stdout.readline().strip())
        set_used(path, 2 * HOUR)  # and not marked used for hours: its run is long

        fetch_commit(url, cache, c2)
        assert kept(cache, url) == {c1, c2}
        assert (path / ".devcontainer.json").read_text() == '{"n": 0}'
    finally:
        reader.communicate("", timeout=30)  # the reader exits
    assert reader.returncode == 0

    fetch_commit(url, cache, c3)
    assert kept(cache, url) == {c2, c3}


READER = """\
import sys
from devjobs.resolver.git import FetchRequest, fetch_sources
url, cache, sha = sys.argv[1:]
request = FetchRequest("app", url, None, sha, (".devcontainer/", ".devcontainer.json"), "x")
checkout = fetch_sources([request], cache_dir=__import__("pathlib").Path(cache))["app"]
print(checkout.path, flush=True)
sys.stdin.read()
"""


def test_an_old_unused_remote_is_removed_whole(
    app: WorkRepo,
    git_repos: RepoRoot,
    git_daemon: GitDaemon,
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = git_repos.create("other")
    other.write(".devcontainer.json", "{}")
    other.commit()
    fetch_one(git_daemon.url("other"), cache)
    fetch_one(git_daemon.url("app"), cache)
    release_checkouts()
    old = remote_of(cache, git_daemon.url("other"))
    set_remote_used(old, 31 * DAY)
    set_used(last_prune(cache), 2 * HOUR)
    monkeypatch.setenv("DEVJOBS_CACHE_MAX_AGE_DAYS", "60")

    fetch_one(git_daemon.url("app"), cache)  # the hourly pass, with a longer age limit
    assert old.root.is_dir()

    release_checkouts()
    monkeypatch.delenv("DEVJOBS_CACHE_MAX_AGE_DAYS")
    set_used(last_prune(cache), 2 * HOUR)
    fetch_one(git_daemon.url("app"), cache)  # the default: 30 days

    assert not old.root.exists()
    left = sorted(p.name for p in (cache / "git").iterdir())
    assert left == sorted([".last-prune", cache_key(git_daemon.url("app"))])
    assert fetch_one(git_daemon.url("other"), cache).path.is_dir()  # fetched anew


def test_a_second_plan_within_the_hour_does_not_walk_the_cache(
    app: WorkRepo,
    git_repos: RepoRoot,
    git_http: GitHttpServer,
    cache: Path,
) -> None:
    fetch_one(git_http.url("app"), cache)  # the first pass: an empty cache
    other = git_repos.create("other")
    other.write(".devcontainer.json", "{}")
    other.commit()
    fetch_one(git_http.url("other"), cache)
    release_checkouts()
    old = remote_of(cache, git_http.url("other"))
    set_remote_used(old, 31 * DAY)
    git_http.requests.clear()

    fetch_one(git_http.url("app"), cache)

    assert old.root.is_dir()  # not looked at: the last pass was minutes ago
    assert len(git_http.requests) == 1  # and the plan still costs one request

    set_used(last_prune(cache), 61 * 60)
    fetch_one(git_http.url("app"), cache)
    assert not old.root.exists()
    assert time.time() - last_prune(cache).stat().st_mtime < 60


def test_eviction_on_an_unwritable_cache_does_not_fail_the_plan(
    app: WorkRepo, url: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVJOBS_CACHE_MAX_TREES", "1")
    shas = new_commits(app, 3)
    for sha in shas:
        fetch_commit(url, cache, sha)
    set_remote_used(remote_of(cache, url), 2 * HOUR)
    set_used(last_prune(cache), 2 * HOUR)
    directories = [cache, *(p for p in cache.rglob("*") if p.is_dir() and not p.is_symlink())]
    for directory in directories:
        directory.chmod(0o555)
    try:
        done = subprocess.run(
            [*as_unprivileged(), sys.executable, "-c", PLANS, url, str(cache), shas[0]],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for directory in directories:
            directory.chmod(0o755)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [shas[0], shas[-1]]
    warnings = done.stderr.splitlines()
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith(f"devjobs: warning: cache eviction in {cache}: ")
    assert "Permission denied" in warnings[0]
    assert kept(cache, url) == set(shas)  # nothing could be removed, nothing broke


PLANS = """\
import sys
from pathlib import Path
from devjobs.resolver.git import FetchRequest, fetch_sources
url, cache, sha = sys.argv[1:]
paths = (".devcontainer/", ".devcontainer.json")
for branch, commit in ((None, sha), ("main", None)):  # pinned, then the branch
    request = FetchRequest("app", url, branch, commit, paths, "x")
    print(fetch_sources([request], cache_dir=Path(cache))["app"].commit, flush=True)
"""


def as_unprivileged() -> list[str]:
    """A prefix that runs a command without root's power to write anywhere."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None:
        pytest.skip("running as root without `unshare` to drop the privilege")
    return ["unshare", "--user"]


def test_a_repository_that_fetched_many_commits_is_started_afresh(
    app: WorkRepo, url: str, cache: Path
) -> None:
    shas = new_commits(app, 12)
    for sha in shas:
        fetch_commit(url, cache, sha)
    remote = remote_of(cache, url)

    pruned = prune(cache, Policy(max_trees=1), wait=True)  # more than 10 x 1 commits

    assert pruned.repositories == 1
    assert not remote.repo.exists()
    assert len(kept(cache, url)) == 12  # all used in the last 10 minutes
    assert fetch_commit(url, cache, shas[0]).commit == shas[0]  # no repository needed
    app.write(".devcontainer.json", "{}")
    newest = app.commit()
    assert fetch_commit(url, cache, newest).commit == newest  # a new one is made
    assert (remote.repo / "HEAD").is_file()


def test_a_size_budget_removes_the_least_recently_used_checkouts_first(
    app: WorkRepo, url: str, cache: Path
) -> None:
    c1, c2, c3 = new_commits(app, 3)
    for hours, sha in ((3, c2), (2, c1), (1, c3)):
        set_used(fetch_commit(url, cache, sha).path, hours * HOUR)
    total = disk_usage(remote_of(cache, url).root)
    budget = total - disk_usage(checkout_of(cache, url, c2)) // 2

    pruned = prune(cache, Policy(max_trees=0, max_age_days=0, max_bytes=budget), wait=True)

    assert (pruned.checkouts, pruned.remotes) == (1, 0)
    assert kept(cache, url) == {c1, c3}
    set_remote_used(remote_of(cache, url), HOUR)
    pruned = prune(cache, Policy(max_trees=0, max_age_days=0, max_bytes=1), wait=True)
    assert (pruned.checkouts, pruned.remotes) == (2, 1)
    assert not remote_of(cache, url).root.exists()


def test_bad_limits_in_the_environment_are_a_warning_not_a_failure(
    app: WorkRepo,
    git_daemon: GitDaemon,
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DEVJOBS_CACHE_MAX_TREES", "twenty")
    monkeypatch.setenv("DEVJOBS_CACHE_MAX_AGE_DAYS", "-1")

    assert fetch_one(git_daemon.url("app"), cache).path.is_dir()

    assert capsys.readouterr().err.splitlines() == [
        "devjobs: warning: ignoring DEVJOBS_CACHE_MAX_TREES='twenty': "
        "expected a whole number >= 0 (using 20)",
        "devjobs: warning: ignoring DEVJOBS_CACHE_MAX_AGE_DAYS='-1': "
        "expected a number >= 0 (using 30)",
    ]


def test_cache_info_counts_and_cache_prune_applies_tighter_limits(
    app: WorkRepo, url: str, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shas = new_commits(app, 3)
    for hours, sha in enumerate(shas, start=1):
        set_used(fetch_commit(url, cache, sha).path, (4 - hours) * HOUR)
    capsys.readouterr()

    assert main(["cache", "info", "--cache-dir", str(cache), "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["cacheDir"] == str(cache)
    assert document["policy"] == {"maxTrees": 20, "maxAgeDays": 30, "maxBytes": None}
    (remote,) = document["remotes"]
    assert remote["key"] == cache_key(url)
    assert remote["checkouts"] == 3
    assert document["bytes"] == remote["checkoutBytes"] + remote["repositoryBytes"] > 0

    assert main(["cache", "prune", "--cache-dir", str(cache), "--max-trees", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("removed 2 checkouts, 0 remotes and 0 repositories: ")
    assert kept(cache, url) == {shas[-1]}

    assert main(["cache", "info", "--cache-dir", str(cache)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["REMOTE", "CHECKOUTS", "CHECKOUTS", "SIZE", "REPOSITORY", "SIZE",
                                "LAST", "USED"]  # fmt: skip
    assert table[1].split()[:2] == [cache_key(url), "1"]
    assert table[-1].startswith(f"{cache}: 1 remote, 1 checkout, ")


def test_cache_prune_refuses_negative_limits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cache", "prune", "--max-age-days", "-3"])
    assert exited.value.code == 2
    assert "must be a number >= 0, got -3" in capsys.readouterr().err


def test_a_process_waiting_for_an_evicted_remote_locks_its_successor(
    app: WorkRepo, url: str, cache: Path
) -> None:
    fetch_one(url, cache)
    release_checkouts()
    remote = remote_of(cache, url)
    set_remote_used(remote, 31 * DAY)
    old_lock = (remote.root / "lock").stat().st_ino
    seen: list[bool] = []

    def waiter() -> None:  # another process about to fetch: it waits for the lock
        with RemoteCache(cache, remote.root.name).locked():
            seen.append((remote.root / "lock").is_file())

    with remote.locked():
        thread = threading.Thread(target=waiter)
        thread.start()
        deadline = time.monotonic() + 30
        while not blocked_on(old_lock):
            assert time.monotonic() < deadline, "the waiter never waited for the lock"
            time.sleep(0.01)
        assert remote.evict_remote(30 * DAY, time.time(), Pruned())
    thread.join(timeout=30)

    assert seen == [True]  # it locked the new remote's lock file, not the evicted one
    assert remote.trees.is_dir()


def blocked_on(inode: int) -> bool:
    """Whether some flock waits for the file with this inode (Linux's /proc/locks)."""
    lines = Path("/proc/locks").read_text().splitlines()
    return any("->" in line and f":{inode} " in line for line in lines)


def test_a_reader_that_found_a_checkout_being_evicted_fetches_it_again(
    app: WorkRepo, url: str, cache: Path
) -> None:
    sha = app.rev_parse("main")
    path = fetch_commit(url, cache, sha).path
    remote = remote_of(cache, url)
    found: list[bool] = []

    def reader() -> None:  # found the checkout without the lock, now opening it
        found.append(remote.use_checkout(path))

    evictor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(evictor, fcntl.LOCK_EX)  # an evictor, mid-way: locked, not renamed yet
        thread = threading.Thread(target=reader)
        thread.start()
        deadline = time.monotonic() + 30
        while not blocked_on(os.fstat(evictor).st_ino):
            assert time.monotonic() < deadline, "the reader never waited for the checkout"
            time.sleep(0.01)
        os.rename(path, path.parent / ".tmp-evict-test")
    finally:
        os.close(evictor)
    thread.join(timeout=30)

    assert found == [False]  # not the directory being deleted
    again = fetch_commit(url, cache, sha)
    assert again.path == path and (path / ".devcontainer.json").read_text() == "{}"
