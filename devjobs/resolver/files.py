"""The files of a repository at a commit, from the resolver's git cache, without network.

Check-run annotations may only name files of the repository at that commit. The resolver
fetched the commit `--depth 1 --filter=blob:none` into its cache (every tree, no blob),
so the list of paths is one local `git ls-tree`: no checkout, no fetch (the cache
repository stores no remote URL, so a missing tree cannot be fetched lazily either; it
makes the answer empty instead). A repository the cache does not hold at that commit
gives an empty set: annotations are then left out, nothing else changes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from devjobs.resolver.cache import RemoteCache, default_cache_dir
from devjobs.resolver.urls import cache_key

MAX_FILES = 200_000


def repository_files(url: str, commit: str, cache_dir: Path | None = None) -> frozenset[str]:
    """Repository-relative paths of every file at `commit` of `url`, or an empty set."""
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        return frozenset()
    repo = RemoteCache(cache_dir or default_cache_dir(), cache_key(url)).repo
    if not (repo / "HEAD").is_file():
        return frozenset()
    env = {**os.environ, "GIT_NO_LAZY_FETCH": "1", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(
            ["git", f"--git-dir={repo}", "ls-tree", "-r", "-z", "--name-only", "--full-tree",
             commit],
            capture_output=True, timeout=20, env=env, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    if done.returncode != 0:
        return frozenset()
    names = done.stdout.decode("utf-8", "replace").split("\0")
    return frozenset(n for n in names[:MAX_FILES] if n)
