"""Real git servers on loopback for tests: `git daemon` and smart HTTP with token auth.

tests/conftest.py loads this module as a plugin, so any test can ask for the fixtures::

    def test_something(git_repos, git_http):
        repo = git_repos.create("app")                      # a work repo under the served root
        repo.write(".devcontainer/devcontainer.json", "{}")
        sha = repo.commit("first")                          # on branch `main`
        url = git_http.url("app")                           # http://127.0.0.1:PORT/app
        git_http.requests.clear()                           # every request is recorded
        ...
        assert len(git_http.requests) == 1
        assert sum(r.bytes_out for r in git_http.requests) < 10_000

Fixtures (all function-scoped, each test gets its own processes and directories):

- `git_repos`: a `RepoRoot`; `create(name)` makes a non-bare repository at
  `<root>/<name>` with branch `main` and returns a `WorkRepo` (write, remove, commit,
  branch, checkout, rev_parse). Both servers serve every repository under this root.
- `git_daemon`: a `GitDaemon` serving the root over `git://127.0.0.1:PORT/<name>`.
- `git_http`: a `GitHttpServer` (git's own `git http-backend` behind a threaded
  http.server CGI wrapper) serving the root at `http://127.0.0.1:PORT/<name>`. It
  requires HTTP Basic auth whose password is `GIT_HTTP_TOKEN` (any user name, like
  GitHub's `x-access-token:<token>`); `set_token(None)` makes it anonymous. It records
  each request (`requests`: method, path, status, bytes in and out) for round-trip and
  byte counts.

Both servers run upload-pack with `uploadpack.allowFilter=true` (partial fetch, as
GitHub allows) and protocol v2 when the client asks for it. Nothing leaves loopback.
Needs the Debian package `git` (which ships `git daemon` and `git http-backend`).
"""

from __future__ import annotations

import base64
import gzip
import hmac
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

GIT_HTTP_TOKEN = "tok-3f9a7c1e5b2d4a68"
"""The token the HTTP fixture accepts; tests grep for it to prove it never leaks."""

SERVER_GIT_CONFIG = {"uploadpack.allowFilter": "true"}

_GIT_ENV_CLEAN = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_PARAMETERS")


def _server_env() -> dict[str, str]:
    """Environment for server processes: no user config, filter support on."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_CLEAN}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    env["GIT_CONFIG_COUNT"] = str(len(SERVER_GIT_CONFIG))
    for i, (key, value) in enumerate(SERVER_GIT_CONFIG.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _author_env() -> dict[str, str]:
    env = _server_env()
    env.update(
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
    )
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


class WorkRepo:
    """A non-bare repository the test writes and commits to; servers serve it as is."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, input: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=_author_env(),
            input=input,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr.decode()}")
        return done.stdout.decode().strip()

    def write(self, path: str, content: str | bytes) -> None:
        target = self.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)

    def symlink(self, path: str, target: str) -> None:
        link = self.path / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def remove(self, path: str) -> None:
        self.git("rm", "-rq", "--", path)

    def commit(self, message: str = "change") -> str:
        """Commit everything in the work tree; returns the new full sha."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.rev_parse("HEAD")

    def grow(self, commits: int, files: int, blob_bytes: int, under: str = "data") -> str:
        """Add `commits` commits on the current branch, each rewriting one of `files`
        random (incompressible) files of `blob_bytes` under `under/`, in one
        `git fast-import` run (seconds for tens of MB). Returns the new tip sha."""
        branch = self.git("symbolic-ref", "HEAD")
        parent = self.rev_parse("HEAD")
        chunks = []
        for i in range(commits):
            data = os.urandom(blob_bytes)
            message = f"grow {i}".encode()
            chunks += [
                f"commit {branch}\n".encode(),
                b"committer Test <test@example.invalid> 1700000000 +0000\n",
                b"data %d\n%s\n" % (len(message), message),
                f"from {parent}\n".encode() if i == 0 else b"",
                f"M 100644 inline {under}/file{i % files}.bin\n".encode(),
                b"data %d\n%s\n" % (len(data), data),
            ]
        self.git("fast-import", "--quiet", input=b"".join(chunks))
        self.git("reset", "-q", "--hard")
        return self.rev_parse("HEAD")

    def branch(self, name: str, start: str = "HEAD") -> None:
        self.git("branch", "-f", name, start)

    def checkout(self, name: str) -> None:
        self.git("checkout", "-q", name)

    def rev_parse(self, rev: str) -> str:
        return self.git("rev-parse", "--verify", rev)


class RepoRoot:
    """The directory both servers serve; one repository per sub-directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def create(self, name: str) -> WorkRepo:
        path = self.path / name
        path.mkdir(parents=True)
        repo = WorkRepo(path)
        repo.git("init", "-q", "-b", "main")
        return repo


class GitDaemon:
    """`git daemon` on a free loopback port, serving a `RepoRoot`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--informative-errors",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={root}",
                str(root),
            ],
            env=_server_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.proc)

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server saw it."""

    method: str
    path: str
    status: int
    bytes_in: int
    bytes_out: int
    authorization: str | None


class _CgiHandler(BaseHTTPRequestHandler):
    """Runs `git http-backend` as CGI for each request (HTTP/1.0: one request per connection)."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: tests read `requests` instead."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorised(self) -> bool:
        token = self.server.owner.token
        if token is None:
            return True
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(password.encode(), token.encode())

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, body_in: int) -> None:
        head = [f"HTTP/1.0 {status} {self.responses.get(status, ('',))[0]}"]
        head += [f"{k}: {v}" for k, v in headers]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.wfile.write(data)
        self.server.owner.record(
            Request(
                self.command,
                self.path,
                status,
                body_in,
                len(data),
                self.headers.get("Authorization"),
            )
        )

    def _handle(self) -> None:
        body = self._read_body()
        if not self._authorised():
            self._send(
                401, [("WWW-Authenticate", 'Basic realm="git"')], b"unauthorised\n", len(body)
            )
            return
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        path, _, query = self.path.partition("?")
        env = _server_env()
        env.update(
            GIT_PROJECT_ROOT=str(self.server.owner.root),
            GIT_HTTP_EXPORT_ALL="1",
            REQUEST_METHOD=self.command,
            PATH_INFO=path,
            QUERY_STRING=query,
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(len(body)),
            REMOTE_ADDR="127.0.0.1",
            GATEWAY_INTERFACE="CGI/1.1",
            SERVER_PROTOCOL="HTTP/1.0",
        )
        if proto := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = proto
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        raw_head, _, out = done.stdout.partition(b"\r\n\r\n")
        if not _:
            raw_head, _, out = done.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in raw_head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self._send(status, headers, out, len(body))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: GitHttpServer


class GitHttpServer:
    """Smart-HTTP git server (git http-backend via CGI) with optional token auth."""

    def __init__(self, root: Path, token: str | None = GIT_HTTP_TOKEN) -> None:
        self.root = root
        self.token = token
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _CgiHandler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def set_token(self, token: str | None) -> None:
        self.token = token

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def bytes_out(self) -> int:
        """Bytes sent to clients (headers and bodies) since `requests` was last cleared."""
        with self._lock:
            return sum(r.bytes_out for r in self.requests)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def git_repos(tmp_path: Path) -> RepoRoot:
    root = tmp_path / "served"
    root.mkdir()
    return RepoRoot(root)


@pytest.fixture
def git_daemon(git_repos: RepoRoot) -> Iterator[GitDaemon]:
    if shutil.which("git") is None:
        pytest.fail("git is not installed (Debian package `git`)")
    daemon = GitDaemon(git_repos.path)
    yield daemon
    daemon.stop()


@pytest.fixture
def git_http(git_repos: RepoRoot) -> Iterator[GitHttpServer]:
    server = GitHttpServer(git_repos.path)
    yield server
    server.stop()
