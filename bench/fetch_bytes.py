"""Bytes a remote plan fetches from a large repository, against a full `git clone`.

    .venv/bin/python -m bench.fetch_bytes [--commits N] [--files N] [--blob-kb N] [--runs N]

Builds a repository locally (a small .devcontainer/ plus N commits each rewriting one
of F random, incompressible files outside it), serves it with the HTTP test server
(git http-backend, token auth, loopback) and counts the bytes the server sends for:

- our fetch (`fetch_sources` of `.devcontainer/` and `.devcontainer.json` at `main`,
  empty cache): the figure the goal is about, at most 5% of the full clone;
- `git clone --bare` of the same URL (the full repository);
- a repeated plan with a warm cache (branch unchanged: one request).

Wall times are medians over --runs of the first (cold cache) and repeated plans.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from devjobs.resolver.git import FetchRequest, fetch_sources
from tests.gitserver import GIT_HTTP_TOKEN, GitHttpServer, RepoRoot

PATHS = (".devcontainer/", ".devcontainer.json")


def full_clone_bytes(server: GitHttpServer, url: str, into: Path) -> tuple[int, int]:
    """Bytes served and requests made for `git clone --bare` of url."""
    header = base64.b64encode(f"x-access-token:{GIT_HTTP_TOKEN}".encode()).decode()
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_COUNT="1")
    env.update(
        GIT_CONFIG_KEY_0="http.extraHeader", GIT_CONFIG_VALUE_0=f"Authorization: Basic {header}"
    )
    server.requests.clear()
    subprocess.run(["git", "clone", "-q", "--bare", "--", url, str(into)], env=env, check=True)
    return server.bytes_out(), len(server.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=400)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--blob-kb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="devjobs-bench-") as tmp:
        root = RepoRoot(Path(tmp) / "served")
        root.path.mkdir()
        repo = root.create("large")
        repo.write(".devcontainer/devcontainer.json", '{"image": "python:3.12"}\n')
        repo.write(".devcontainer/Dockerfile", "FROM python:3.12\n")
        repo.write(".devcontainer.json", "{}\n")
        repo.write("README.md", "# large\n")
        repo.commit("devcontainer")
        started = time.monotonic()
        repo.grow(args.commits, args.files, args.blob_kb * 1024)
        repo.git("gc", "-q")  # serve from one pack, as a forge would
        built = time.monotonic() - started
        history_mb = args.commits * args.blob_kb / 1024
        server = GitHttpServer(root.path)
        url = server.url("large")
        request = FetchRequest("large", url, "main", None, PATHS, "bench")
        try:
            clone_bytes, clone_requests = full_clone_bytes(server, url, Path(tmp) / "clone.git")
            firsts, repeats, ours, ours_requests, repeat_bytes = [], [], 0, 0, 0
            for run in range(args.runs):
                cache = Path(tmp) / f"cache{run}"
                server.requests.clear()
                t0 = time.perf_counter()
                fetch_sources([request], cache_dir=cache, token=GIT_HTTP_TOKEN)
                firsts.append(time.perf_counter() - t0)
                ours, ours_requests = server.bytes_out(), len(server.requests)
                server.requests.clear()
                t0 = time.perf_counter()
                fetch_sources([request], cache_dir=cache, token=GIT_HTTP_TOKEN)
                repeats.append(time.perf_counter() - t0)
                repeat_bytes = server.bytes_out()
        finally:
            server.stop()

    print(
        f"repository: {args.commits} commits, {args.files} files of {args.blob_kb} KiB "
        f"outside .devcontainer ({history_mb:.0f} MiB of history), built in {built:.1f}s"
    )
    print(f"full clone:     {clone_bytes:>12,} bytes in {clone_requests} requests")
    print(f"our fetch:      {ours:>12,} bytes in {ours_requests} requests")
    print(f"ratio:          {ours / clone_bytes:.4%} of a full clone (goal <= 5%)")
    print(f"repeated plan:  {repeat_bytes:>12,} bytes in 1 request when unchanged")
    print(
        f"wall time (median of {args.runs}): first plan {statistics.median(firsts) * 1000:.0f} ms, "
        f"repeated plan {statistics.median(repeats) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
