"""The controller's GitHub App: check-run clients per installation, and the files of a
repository at a commit (for annotations), both kept for the life of the process.

`act.post_check_run` is the only user; `cli/controller.py` builds one from
`--github-app-id`, the key file and `--github-api-url`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from devjobs.github.app import GitHubApp
from devjobs.github.checks import CheckRuns

RepoFiles = Callable[[str, str], frozenset[str]]
"""(repositoryUrl, commit) -> the repository's file paths at that commit."""


def no_files(url: str, commit: str) -> frozenset[str]:
    return frozenset()


@dataclass
class AppChecks:
    app: GitHubApp
    api_url: str = "https://api.github.com"
    repo_files: RepoFiles = no_files
    max_retries: int = 2
    max_wait: float = 10.0
    """Seconds a worker may wait for GitHub; a longer rate limit requeues the round."""
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    _clients: dict[int, CheckRuns] = field(default_factory=dict)
    _files: OrderedDict[tuple[str, str], frozenset[str]] = field(default_factory=OrderedDict)
    _created: dict[tuple[str, ...], tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    created_ttl: float = 600.0

    def created(self, key: tuple[str, ...], check_run_id: int) -> None:
        """A check run this process created for `key` (namespace, target, job, commit):
        until the reflector shows the record, a later round must update it, not create
        another."""
        with self._lock:
            self._created[key] = (check_run_id, time.monotonic())
            for old, (_, at) in list(self._created.items()):
                if time.monotonic() - at > self.created_ttl:
                    del self._created[old]

    def created_id(self, key: tuple[str, ...]) -> int | None:
        with self._lock:
            found = self._created.get(key)
        return found[0] if found is not None else None

    def client(self, installation_id: int) -> CheckRuns:
        with self._lock:
            found = self._clients.get(installation_id)
            if found is None:
                found = CheckRuns(
                    self.app.installation(installation_id), api_url=self.api_url,
                    max_retries=self.max_retries, max_wait=self.max_wait, sleep=self.sleep,
                    clock=self.clock,
                )  # fmt: skip
                self._clients[installation_id] = found
            return found

    def files(self, url: str | None, commit: str) -> frozenset[str]:
        """`repo_files`, cached (the 64 most recent commits); empty on any failure."""
        if not url:
            return frozenset()
        key = (url, commit)
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        try:
            found = self.repo_files(url, commit)
        except Exception:  # annotations are a courtesy: never a reason to fail a post
            found = frozenset()
        with self._lock:
            self._files[key] = found
            while len(self._files) > 64:
                self._files.popitem(last=False)
        return found
