"""Fetch the devcontainer files of each source: a few blobs of one commit, not the repo.

Per source: resolve the commit (a pinned full sha needs no network; a branch costs one
`ls-remote` request), and only when that commit's checkout is not cached yet, fetch the
commit with `--depth 1 --filter=blob:none` (commit and trees, no history, no blobs),
then exactly the blobs the sparse patterns select, and write them into a checkout
directory (see `sparse`). Sources are fetched in parallel threads; the cache (see
`cache`) is shared with other devjobs processes, and pruned by the fetches themselves:
a remote's checkouts after a fetch added one, the whole cache at most once an hour.

git runs with a fixed, hardened environment: hooks off, only allowed transports, no
prompts, no submodules, a process timeout, and the remote URL and any token passed
only through `GIT_CONFIG_*` variables. git never checks anything out: devjobs writes
the selected files itself, validating every path (see `sparse`), so objects that
`fsck` would only flag as cosmetic (an old tip commit with a bad time zone) still
work. Every message from git is reduced to one redacted line.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from git.cmd import Git
from git.exc import GitCommandNotFound

from devjobs.errors import DevjobsError
from devjobs.resolver import sparse
from devjobs.resolver.cache import (
    GRACE_SECONDS,
    Policy,
    RemoteCache,
    default_cache_dir,
    prune_after_fetch,
    prune_if_due,
    release_checkouts,
)
from devjobs.resolver.credentials import Token, config_env, find_token
from devjobs.resolver.urls import cache_key, check_url, redact, redact_text, userinfo_secret

MAX_PARALLEL = 8
_FULL_SHA = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
_ABBREV_SHA = re.compile(r"^[0-9a-f]{4,63}$")


@dataclass(frozen=True)
class FetchRequest:
    """One source to fetch. `place` names where the URL came from, for errors."""

    source: str
    url: str
    branch: str | None
    """Fetched when `commit` is None; None too means the remote's default branch."""
    commit: str | None
    """Pinned: exactly this commit (full sha, or an abbreviation that names a branch
    tip or a commit fetched before)."""
    paths: tuple[str, ...]
    """Sparse patterns to materialise, e.g. `(".devcontainer/", ".devcontainer.json")`;
    `()` materialises the whole tree of the commit (a full checkout, still depth 1)."""
    place: str
    allow_file: bool = False
    branch_place: str | None = None
    """Where the branch came from, if not `place`."""
    commit_place: str | None = None
    """Where the pinned commit came from, if not `place`."""


@dataclass(frozen=True)
class Checkout:
    """A source's requested paths, materialised at one commit. Never modified once made."""

    source: str
    path: Path
    commit: str
    url: str
    """Redacted."""


_CACHE_REPO_CONFIG = """\
[core]
\trepositoryFormatVersion = 1
\thooksPath = /dev/null
[extensions]
\tpartialClone = origin
[remote "origin"]
\tpromisor = true
\tpartialCloneFilter = blob:none
[gc]
\tauto = 0
[maintenance]
\tauto = false
"""
"""Written once into each cache repository: a partial clone of `origin`, whose URL is
never stored (it is given to each command in the environment), and no automatic gc."""


class _GitFailed(Exception):
    """git exited non-zero: its stderr, already redacted."""

    def __init__(self, stderr: str, timed_out: bool) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.timed_out = timed_out


class _Git:
    """Runs git against one cache repository and one remote, in a hardened environment."""

    def __init__(
        self, repo: Path, url: str, token: Token | None, allow_file: bool, timeout: float
    ) -> None:
        self.repo = repo
        self.url = url
        self.timeout = timeout
        in_url = userinfo_secret(url)
        is_http = url.lower().startswith(("http://", "https://"))
        self.token = token if is_http and in_url is None else None
        self.secrets = (*(self.token.secrets() if self.token else ()), *filter(None, [in_url]))
        protocols = "http:https:ssh:git" + (":file" if allow_file else "")
        self._env = {
            "GIT_DIR": str(repo),
            "GIT_COMMON_DIR": str(repo),
            "GIT_OBJECT_DIRECTORY": str(repo / "objects"),
            "GIT_ALLOW_PROTOCOL": protocols,
            "GIT_TERMINAL_PROMPT": "0",
            "GCM_INTERACTIVE": "never",
            "GIT_LITERAL_PATHSPECS": "1",
            "GIT_NO_REPLACE_OBJECTS": "1",
        }
        self._config = {
            "core.hooksPath": "/dev/null",
            "core.fsmonitor": "false",
            "protocol.ext.allow": "never",
            "protocol.fd.allow": "never",
            "submodule.recurse": "false",
            "fetch.recurseSubmodules": "false",
            "fetch.writeCommitGraph": "false",
            "gc.auto": "0",
            "maintenance.auto": "false",
        }

    def _run(self, args: Sequence[str], config: dict[str, str], stdin: bytes | None) -> bytes:
        env = {**self._env, **config_env({**self._config, **config})}
        command = [Git.GIT_PYTHON_GIT_EXECUTABLE or "git", *args]
        with tempfile.TemporaryFile() as istream:
            if stdin is not None:
                istream.write(stdin)
                istream.seek(0)
            try:
                status, out, err = Git(str(self.repo.parent)).execute(
                    command,
                    env=env,
                    istream=istream if stdin is not None else None,
                    kill_after_timeout=self.timeout,
                    with_extended_output=True,
                    with_exceptions=False,
                    stdout_as_string=False,
                )
            except GitCommandNotFound:
                raise DevjobsError(
                    "", "git is not installed (it is needed to fetch sources)"
                ) from None
        text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
        if status != 0:
            timed_out = text.startswith("Timeout:")
            raise _GitFailed(redact_text(text, self.secrets), timed_out)
        return out if isinstance(out, bytes) else str(out).encode()

    def local(self, *args: str, stdin: bytes | None = None) -> bytes:
        """A command that must not touch the network: no remote URL is configured."""
        return self._run(args, {}, stdin)

    def remote(self, *args: str, protocol: int = 2, stdin: bytes | None = None) -> bytes:
        """A command talking to the remote `origin` (URL and token only in the environment)."""
        config = {
            "remote.origin.url": self.url,
            "protocol.version": str(protocol),
            "http.lowSpeedLimit": "1000",
            "http.lowSpeedTime": str(max(1, int(self.timeout))),
        }
        if self.token is not None:
            config["http.extraHeader"] = self.token.header()
        return self._run(args, config, stdin)


class _Tips:
    """Branch tips asked of each remote once per plan, however many sources share it
    (a monorepo listed as several sources still costs one request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked: dict[tuple[str, str | None], Future[str]] = {}

    def get(self, url: str, branch: str | None, ask: Callable[[], str]) -> str:
        with self._lock:
            asked = self._asked.get((url, branch))
            if asked is None:
                asked = self._asked[(url, branch)] = Future()
                mine = True
            else:
                mine = False
        if mine:
            try:
                asked.set_result(ask())
            except BaseException as err:
                asked.set_exception(err)
                raise
        elif asked.exception() is not None:
            return ask()  # fail with this source's own place
        return asked.result()


class _SourceFetch:
    """Fetching one request: the steps in order, each failure mapped to the right place."""

    def __init__(
        self,
        request: FetchRequest,
        cache_dir: Path,
        timeout: float,
        token: Token | None,
        tips: _Tips,
        policy: Policy,
    ) -> None:
        self.request = request
        self.tips = tips
        self.policy = policy
        self.shown = redact(request.url)
        check_url(request.url, place=request.place, allow_file=request.allow_file)
        self.patterns = sparse.check_patterns(request.paths, request.place)
        self.cache = RemoteCache(cache_dir, cache_key(request.url))
        self.git = _Git(self.cache.repo, request.url, token, request.allow_file, timeout)
        self.token = self.git.token
        self.branch = _checked_branch(request.branch, request.branch_place or request.place)
        self.commit = _checked_commit(request.commit, request.commit_place or request.place)

    def run(self) -> Checkout:
        with self.cache.in_use():
            return self._run()

    def _run(self) -> Checkout:
        commit = self.commit
        if commit is not None and _FULL_SHA.match(commit):
            done = self._cached(commit)
            if done is not None:
                return done  # pinned and cached: no network at all
        self._ensure_repo()
        if commit is None:
            commit = self.tips.get(self.request.url, self.branch, self._branch_tip)
        elif not _FULL_SHA.match(commit):
            commit = self._expand(commit)
        done = self._cached(commit)
        if done is not None:
            return done
        with self.cache.locked():
            done = self._cached(commit)
            if done is None:
                self._fetch_commit(commit)
                self._materialise(commit)
                done = self._cached(commit)
                prune_after_fetch(self.cache, self.policy)
        assert done is not None
        return done

    def _cached(self, commit: str) -> Checkout | None:
        """The checkout if it is there, now held by this process and marked used."""
        path = self.cache.checkout_dir(commit, sparse.patterns_key(self.patterns))
        if not self.cache.use_checkout(path):
            return None
        return Checkout(self.request.source, path, commit, self.shown)

    def _fail(self, failure: _GitFailed, place: str | None = None) -> DevjobsError:
        """A one-line error for a failed git command, naming the remote and the cause."""
        text = failure.stderr
        if failure.timed_out:
            reason = f"timed out after {self.git.timeout:g}s"
        elif re.search(
            r"Authentication failed|terminal prompts disabled|could not read "
            r"(Username|Password)|\b401\b|\b403\b",
            text,
        ):
            if self.token is not None:
                reason = f"authentication failed: the token from {self.token.source} was refused"
            else:
                reason = (
                    "authentication required: set DEVJOBS_GIT_TOKEN "
                    "or configure a git credential helper"
                )
        elif re.search(
            r"repository '.*' not found|does not appear to be a git repository|"
            r"\b404\b|No such repository|not exported",
            text,
        ):
            reason = "repository not found"
        else:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
            line = (fatal or lines or ["git failed without a message"])[0]
            reason = re.sub(r"^(fatal|error): ", "", line)
        return DevjobsError(place or self.request.place, f"{self.shown}: {reason}")

    def _ensure_repo(self) -> None:
        """Create the cache repository once: bare, partial (promisor `origin`), no URL stored."""
        if (self.cache.repo / "HEAD").is_file():
            return
        with self.cache.locked():
            if (self.cache.repo / "HEAD").is_file():
                return
            built = self.cache.temp_dir(self.cache.root)
            init = _Git(built, "", None, False, self.git.timeout)
            try:
                init.local("init", "-q", "--bare", "--template=", "--", str(built))
            except _GitFailed as failure:
                raise DevjobsError("", f"cannot create a cache repository: {failure}") from None
            with open(built / "config", "a", encoding="utf-8") as config:
                config.write(_CACHE_REPO_CONFIG)
            self.cache.publish(built, self.cache.repo)

    def _ls_remote(self, *patterns: str) -> dict[str, str]:
        """Refs of the remote as {name: sha}, in one request (protocol v0 advertisement)."""
        try:
            out = self.git.remote("ls-remote", "origin", *patterns, protocol=0)
        except _GitFailed as failure:
            raise self._fail(failure) from None
        refs = {}
        for line in out.decode("utf-8", "replace").splitlines():
            sha, _, name = line.partition("\t")
            refs[name] = sha
        return refs

    def _branch_tip(self) -> str:
        branch = self.branch
        place = self.request.branch_place or self.request.place
        if branch is None:
            refs = self._ls_remote("HEAD")
            if "HEAD" not in refs:
                raise DevjobsError(place, f"{self.shown}: the remote has no default branch")
            return refs["HEAD"]
        ref = f"refs/heads/{branch}"
        sha = self._ls_remote(ref).get(ref)
        if sha is None:
            raise DevjobsError(place, f"branch {branch!r} not found on {self.shown}")
        return sha

    def _expand(self, abbrev: str) -> str:
        """An abbreviated sha: a commit fetched before, else a ref tip on the remote."""
        place = self.request.commit_place or self.request.place
        try:
            return (
                self.git.local("rev-parse", "-q", "--verify", f"{abbrev}^{{commit}}")
                .decode()
                .strip()
            )
        except _GitFailed:
            pass
        tips = {sha for name, sha in self._ls_remote().items() if sha.startswith(abbrev)}
        if len(tips) == 1:
            return tips.pop()
        raise DevjobsError(
            place,
            f"commit {abbrev!r} is ambiguous or not a branch tip on {self.shown}: "
            "give the full 40-character sha",
        )

    def _fetch_commit(self, commit: str) -> None:
        """One commit and its trees, no parents, no blobs; kept alive by a ref."""
        ref = f"refs/devjobs/{commit}"
        if (self.cache.repo / ref).is_file():
            return
        try:
            self.git.remote(
                "fetch", "-q", "--depth=1", "--filter=blob:none", "--no-tags",
                "--no-write-fetch-head", "--recurse-submodules=no", "origin", commit,
            )  # fmt: skip
        except _GitFailed as failure:
            if re.search(
                r"not our ref|unadvertised object|couldn't find remote ref|"
                r"no such remote ref|not a valid object",
                failure.stderr,
            ):
                place = self.request.commit_place or self.request.place
                raise DevjobsError(place, f"commit {commit} not found on {self.shown}") from None
            raise self._fail(failure) from None
        try:
            self.git.local("update-ref", "--no-deref", ref, commit)
        except _GitFailed as failure:
            raise self._fail(failure) from None

    def _materialise(self, commit: str) -> None:
        """Fetch the selected blobs in one request and write them to a new checkout dir."""
        try:
            listing = self.git.local(
                "ls-tree", "-r", "-z", "--full-tree", commit, "--",
                *sparse.pathspecs(self.patterns),
            )  # fmt: skip
            entries = [e for e in _parse_ls_tree(listing) if sparse.selected(e.path, self.patterns)]
            oids = sorted({e.oid for e in entries if e.mode != sparse.MODE_GITLINK})
            if oids:
                self.git.remote(
                    "-c", "fetch.negotiationAlgorithm=noop", "fetch", "-q", "--no-tags",
                    "--no-write-fetch-head", "--recurse-submodules=no", "--filter=blob:none",
                    "--stdin", "origin", stdin="".join(f"{oid}\n" for oid in oids).encode(),
                )  # fmt: skip
            blobs = (
                _parse_batch(
                    self.git.local("cat-file", "--batch", stdin="\n".join(oids).encode() + b"\n")
                )
                if oids
                else {}
            )
        except _GitFailed as failure:
            raise self._fail(failure) from None
        built = self.cache.temp_dir(self.cache.trees)
        try:
            sparse.write_tree(built, entries, blobs, limited=bool(self.patterns))
        except BaseException as err:
            shutil.rmtree(built, ignore_errors=True)  # no partial checkout left behind
            if isinstance(err, DevjobsError):
                message = f"{self.shown} at {commit}: {err.message}"
                raise DevjobsError(self.request.place, message) from None
            raise
        self.cache.publish(
            built, self.cache.checkout_dir(commit, sparse.patterns_key(self.patterns))
        )


def _checked_branch(branch: str | None, place: str) -> str | None:
    if branch is None:
        return None
    name = branch.removeprefix("refs/heads/")
    if not _valid_branch(name):
        raise DevjobsError(place, f"{branch!r} is not a valid branch name")
    return name


def _checked_commit(commit: str | None, place: str) -> str | None:
    if commit is None:
        return None
    sha = commit.strip().lower()
    if not _ABBREV_SHA.match(sha) and not _FULL_SHA.match(sha):
        raise DevjobsError(place, f"commit {commit!r} is not a hexadecimal sha")
    return sha


def _valid_branch(name: str) -> bool:
    """git's ref-name rules, enough that a branch can never be read as an option or path."""
    return bool(name) and not (
        name.startswith(("-", "/", "."))
        or name.endswith(("/", ".", ".lock"))
        or any(bad in name for bad in ("..", "//", "@{", "/."))
        or any(ord(ch) < 0x21 or ch in "~^:?*[\\\x7f" for ch in name)
    )


def _parse_ls_tree(listing: bytes) -> list[sparse.Entry]:
    entries = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        info, _, path = record.partition(b"\t")
        mode, kind, oid = info.decode().split(" ")
        if kind in ("blob", "commit"):
            entries.append(sparse.Entry(mode, oid, path.decode("utf-8", "surrogateescape")))
    return entries


def _parse_batch(output: bytes) -> dict[str, bytes]:
    """`git cat-file --batch` output: `<oid> <type> <size>\\n<data>\\n` repeated."""
    blobs = {}
    pos = 0
    while pos < len(output):
        header_end = output.index(b"\n", pos)
        oid, kind, size = output[pos:header_end].decode().split(" ")
        start = header_end + 1
        blobs[oid] = output[start : start + int(size)]
        pos = start + int(size) + 1
    return blobs


def fetch_sources(
    requests: Sequence[FetchRequest],
    *,
    cache_dir: Path | None = None,
    timeout: float = 60.0,
    token: str | None = None,
) -> dict[str, Checkout]:
    """Fetch all sources in parallel; on failure raise the first failing source's error.

    `timeout` bounds each git command (seconds). `token` overrides DEVJOBS_GIT_TOKEN /
    GITHUB_TOKEN for http(s) remotes without credentials of their own.
    """
    found = find_token(token)
    root = cache_dir if cache_dir is not None else default_cache_dir()
    policy = Policy.from_env()
    release_checkouts(older_than=GRACE_SECONDS)  # a long-lived process's past plans
    names: set[str] = set()
    for request in requests:
        if request.source in names:
            raise DevjobsError(request.place, f"source {request.source!r} is requested twice")
        names.add(request.source)
    tips = _Tips()
    fetches = [_SourceFetch(request, root, timeout, found, tips, policy) for request in requests]
    if not fetches:
        return {}
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(fetches))) as pool:
        futures = [pool.submit(fetch.run) for fetch in fetches]
        errors = [future.exception() for future in futures]
    prune_if_due(root, policy)
    for error in errors:
        if error is not None:
            raise error
    return {checkout.source: checkout for checkout in (f.result() for f in futures)}
