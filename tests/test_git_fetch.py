"""Fetching sources from real git servers on loopback (git daemon, smart HTTP with a token)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.credentials import Token
from devjobs.resolver.git import Checkout, FetchRequest, fetch_sources
from tests.gitserver import GIT_HTTP_TOKEN, GitDaemon, GitHttpServer, RepoRoot, WorkRepo

PATHS = (".devcontainer/", ".devcontainer.json")
PLACE = "project.yaml: /spec/sources/0/repositoryUrl"
TOKEN_FORMS = Token(GIT_HTTP_TOKEN, "test").secrets()


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config, no tokens, no cache from the machine running tests."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("DEVJOBS_GIT_TOKEN", "GITHUB_TOKEN", "DEVJOBS_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def app(git_repos: RepoRoot) -> WorkRepo:
    """A small repository: devcontainer files plus source outside them."""
    repo = git_repos.create("app")
    repo.write(".devcontainer/devcontainer.json", '{"image": "python:3.12"}')
    repo.write(".devcontainer/setup.sh", "#!/bin/sh\necho hi\n")
    (repo.path / ".devcontainer/setup.sh").chmod(0o755)
    repo.write(".devcontainer.json", "{}")
    repo.write("src/main.py", "print('hello')\n")
    repo.write("README.md", "# app\n")
    repo.commit("first")
    return repo


@pytest.fixture(params=["git-daemon", "http"])
def served(
    request: pytest.FixtureRequest, git_repos: RepoRoot
) -> Iterator[GitDaemon | GitHttpServer]:
    """Each test using this runs against both servers."""
    server: GitDaemon | GitHttpServer
    server = (
        GitDaemon(git_repos.path)
        if request.param == "git-daemon"
        else GitHttpServer(git_repos.path)
    )
    yield server
    server.stop()


def fetch_one(
    url: str,
    cache: Path,
    *,
    branch: str | None = "main",
    commit: str | None = None,
    paths: tuple[str, ...] = PATHS,
    token: str | None = GIT_HTTP_TOKEN,
    timeout: float = 30.0,
) -> Checkout:
    request = FetchRequest("app", url, branch, commit, paths, PLACE)
    return fetch_sources([request], cache_dir=cache, token=token, timeout=timeout)["app"]


def files_in(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = path.read_text()
    return found


def cache_repo(cache: Path) -> Path:
    (repo,) = (cache / "git").glob("*/repo")
    return repo


def git_in(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def assert_secret_absent(cache: Path, *secrets: str) -> None:
    """Not in any path under the cache, nor in any file's bytes (configs, packs, refs)."""
    for path in [cache, *cache.rglob("*")]:
        for secret in secrets:
            assert secret not in str(path)
            if path.is_file() and not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), path


def test_branch_fetch_materialises_only_the_requested_paths(
    app: WorkRepo, served: GitDaemon | GitHttpServer, cache: Path
) -> None:
    checkout = fetch_one(served.url("app"), cache)

    assert checkout.commit == app.rev_parse("main")
    assert checkout.source == "app"
    assert checkout.url == served.url("app")
    assert files_in(checkout.path) == {
        ".devcontainer.json": "{}",
        ".devcontainer/devcontainer.json": '{"image": "python:3.12"}',
        ".devcontainer/setup.sh": "#!/bin/sh\necho hi\n",
    }
    assert os.access(checkout.path / ".devcontainer/setup.sh", os.X_OK)
    assert not os.access(checkout.path / ".devcontainer.json", os.X_OK)


def test_no_patterns_materialise_the_whole_tree(
    app: WorkRepo, git_http: GitHttpServer, cache: Path
) -> None:
    checkout = fetch_one(git_http.url("app"), cache, paths=())

    assert set(files_in(checkout.path)) == {
        ".devcontainer.json",
        ".devcontainer/devcontainer.json",
        ".devcontainer/setup.sh",
        "README.md",
        "src/main.py",
    }
    assert git_in(cache_repo(cache), "rev-list", "--count", checkout.commit) == "1"


def test_glob_and_exact_patterns_select_paths_from_the_root_only(
    git_repos: RepoRoot, git_daemon: GitDaemon, cache: Path
) -> None:
    repo = git_repos.create("app")
    repo.write(".devcontainer/python/devcontainer.json", "{}")
    repo.write(".devcontainer/node/devcontainer.json", "{}")
    repo.write(".devcontainer/node/Dockerfile", "FROM node")
    repo.write("sub/.devcontainer.json", "{}")
    repo.commit()
    checkout = fetch_one(
        git_daemon.url("app"),
        cache,
        paths=(".devcontainer/*/devcontainer.json", ".devcontainer.json"),
    )
    assert set(files_in(checkout.path)) == {
        ".devcontainer/node/devcontainer.json",
        ".devcontainer/python/devcontainer.json",
    }


def test_pinned_commit_not_at_a_branch_tip_is_fetched_exactly(
    app: WorkRepo, served: GitDaemon | GitHttpServer, cache: Path
) -> None:
    old = app.rev_parse("main")
    app.write(".devcontainer.json", '{"new": true}')
    app.commit("second")

    checkout = fetch_one(served.url("app"), cache, commit=old)

    assert checkout.commit == old
    assert (checkout.path / ".devcontainer.json").read_text() == "{}"


def test_abbreviated_commit_at_a_branch_tip_is_resolved(
    app: WorkRepo, git_daemon: GitDaemon, cache: Path
) -> None:
    tip = app.rev_parse("main")
    checkout = fetch_one(git_daemon.url("app"), cache, branch=None, commit=tip[:10].upper())
    assert checkout.commit == tip


def test_moved_branch_is_seen_on_the_next_plan(
    app: WorkRepo, served: GitDaemon | GitHttpServer, cache: Path
) -> None:
    first = fetch_one(served.url("app"), cache)
    app.write(".devcontainer.json", '{"moved": true}')
    moved = app.commit("moved")

    second = fetch_one(served.url("app"), cache)

    assert second.commit == moved != first.commit
    assert (second.path / ".devcontainer.json").read_text() == '{"moved": true}'
    assert (first.path / ".devcontainer.json").read_text() == "{}"  # old checkout intact


def test_unchanged_remote_costs_one_request(
    app: WorkRepo, git_http: GitHttpServer, cache: Path
) -> None:
    first = fetch_one(git_http.url("app"), cache)
    git_http.requests.clear()

    again = fetch_one(git_http.url("app"), cache)

    assert again == first
    assert [(r.method, r.path) for r in git_http.requests] == [
        ("GET", "/app/info/refs?service=git-upload-pack")
    ]


def test_sources_sharing_a_remote_ask_for_its_branch_once(
    app: WorkRepo, git_http: GitHttpServer, cache: Path
) -> None:
    url = git_http.url("app")
    requests = [
        FetchRequest("web", url, "main", None, (".devcontainer/",), "/spec/sources/0"),
        FetchRequest("api", url, "main", None, (".devcontainer.json",), "/spec/sources/1"),
    ]
    first = fetch_sources(requests, cache_dir=cache, token=GIT_HTTP_TOKEN)
    git_http.requests.clear()

    again = fetch_sources(requests, cache_dir=cache, token=GIT_HTTP_TOKEN)

    assert again == first
    assert first["web"].path != first["api"].path
    assert len(git_http.requests) == 1


def test_pinned_commit_in_the_cache_costs_no_request(
    app: WorkRepo, git_http: GitHttpServer, cache: Path
) -> None:
    sha = app.rev_parse("main")
    fetch_one(git_http.url("app"), cache, branch=None, commit=sha)
    git_http.stop()  # nothing may be asked of the remote now

    again = fetch_one(git_http.url("app"), cache, branch=None, commit=sha)

    assert again.commit == sha


def test_huge_repository_fetches_one_commit_and_a_few_kilobytes(
    git_repos: RepoRoot, git_http: GitHttpServer, cache: Path
) -> None:
    repo = git_repos.create("huge")
    repo.write(".devcontainer/devcontainer.json", '{"image": "x"}')
    repo.commit()
    repo.grow(commits=200, files=20, blob_bytes=100_000)  # 20 MB of history
    git_http.requests.clear()

    checkout = fetch_one(git_http.url("huge"), cache)

    fetched = git_http.bytes_out()
    assert fetched < 100_000, f"{fetched} bytes fetched for a 20 MB repository"
    assert git_in(cache_repo(cache), "rev-list", "--count", checkout.commit) == "1"
    assert files_in(checkout.path) == {".devcontainer/devcontainer.json": '{"image": "x"}'}
    pack_bytes = sum(p.stat().st_size for p in (cache_repo(cache) / "objects").rglob("*"))
    assert pack_bytes < 100_000


def test_missing_branch_names_the_branch_place(
    app: WorkRepo, served: GitDaemon | GitHttpServer, cache: Path
) -> None:
    request = FetchRequest(
        "app", served.url("app"), "nope", None, PATHS, PLACE,
        branch_place="project.yaml: /spec/sources/0/branch",
    )  # fmt: skip
    with pytest.raises(DevjobsError) as caught:
        fetch_sources([request], cache_dir=cache, token=GIT_HTTP_TOKEN)
    assert caught.value.place == "project.yaml: /spec/sources/0/branch"
    assert caught.value.message == f"branch 'nope' not found on {served.url('app')}"


def test_missing_commit_says_it_is_not_on_the_remote(
    app: WorkRepo, served: GitDaemon | GitHttpServer, cache: Path
) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(DevjobsError) as caught:
        fetch_one(served.url("app"), cache, commit=missing)
    assert caught.value.place == PLACE
    assert caught.value.message == f"commit {missing} not found on {served.url('app')}"


def test_unknown_abbreviated_commit_asks_for_the_full_sha(
    app: WorkRepo, git_daemon: GitDaemon, cache: Path
) -> None:
    with pytest.raises(DevjobsError, match="give the full 40-character sha"):
        fetch_one(git_daemon.url("app"), cache, commit="abc1234")


def test_missing_repository_is_reported(
    git_repos: RepoRoot, served: GitDaemon | GitHttpServer, cache: Path
) -> None:
    with pytest.raises(DevjobsError) as caught:
        fetch_one(served.url("nothing-here"), cache)
    assert caught.value.place == PLACE
    assert "nothing-here" in caught.value.message
    assert "\n" not in str(caught.value)


def test_http_without_a_token_asks_for_one(
    app: WorkRepo, git_http: GitHttpServer, cache: Path
) -> None:
    with pytest.raises(DevjobsError) as caught:
        fetch_one(git_http.url("app"), cache, token=None)
    assert caught.value.place == PLACE
    assert caught.value.message == (
        f"{git_http.url('app')}: authentication required: "
        "set DEVJOBS_GIT_TOKEN or configure a git credential helper"
    )


def test_wrong_token_is_refused_and_never_shown(
    app: WorkRepo, git_http: GitHttpServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-token-5e1f0c"
    monkeypatch.setenv("DEVJOBS_GIT_TOKEN", wrong)
    with pytest.raises(DevjobsError) as caught:
        fetch_one(git_http.url("app"), cache, token=None)
    assert caught.value.message == (
        f"{git_http.url('app')}: authentication failed: "
        "the token from DEVJOBS_GIT_TOKEN was refused"
    )
    assert all(s not in str(caught.value) for s in Token(wrong, "").secrets())
    assert_secret_absent(cache, *Token(wrong, "").secrets())


def test_token_from_the_environment_is_sent_but_never_stored(
    app: WorkRepo, git_http: GitHttpServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", GIT_HTTP_TOKEN)
    checkout = fetch_one(git_http.url("app"), cache, token=None)

    assert checkout.commit == app.rev_parse("main")
    assert all(r.authorization for r in git_http.requests)
    assert_secret_absent(cache, *TOKEN_FORMS)
    config = (cache_repo(cache) / "config").read_text()
    assert "http" not in config and "127.0.0.1" not in config  # no URL, no header stored


def test_credentials_in_the_url_are_used_and_never_shown(
    app: WorkRepo, git_http: GitHttpServer, cache: Path
) -> None:
    url = git_http.url("app").replace("http://", f"http://x-access-token:{GIT_HTTP_TOKEN}@")
    checkout = fetch_one(url, cache, token=None)
    assert checkout.url == git_http.url("app").replace("http://", "http://x-access-token:***@")
    assert_secret_absent(cache, *TOKEN_FORMS)

    git_http.set_token("another-token")
    with pytest.raises(DevjobsError) as caught:
        fetch_one(url, cache, token=None)
    assert GIT_HTTP_TOKEN not in str(caught.value)


def test_user_credential_helper_is_used_without_a_token(
    app: WorkRepo, git_http: GitHttpServer, cache: Path, tmp_path: Path
) -> None:
    store = tmp_path / "credentials"
    store.write_text(f"http://x-access-token:{GIT_HTTP_TOKEN}@127.0.0.1%3a{git_http.port}\n")
    Path(os.environ["GIT_CONFIG_GLOBAL"]).write_text(
        f"[credential]\n\thelper = store --file={store}\n"
    )

    checkout = fetch_one(git_http.url("app"), cache, token=None)

    assert checkout.commit == app.rev_parse("main")
    assert_secret_absent(cache, *TOKEN_FORMS)


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% {marker}",
        "--upload-pack=touch {marker}",
        "-u touch {marker}",
        "fd::0",
        "transport::x",
        "file://{root}/app",
        "{root}/app",
        "./app",
        "ssh://-oProxyCommand=touch%20{marker}/app",
        "-oProxyCommand=touch {marker}:app",
        "user@-oProxyCommand=x:app",
        "",
        "git://127.0.0.1/app\n--upload-pack=touch {marker}",
    ],
)
def test_refused_urls_fail_before_git_runs(
    app: WorkRepo, git_repos: RepoRoot, cache: Path, tmp_path: Path, url: str
) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(DevjobsError) as caught:
        fetch_one(url.format(marker=marker, root=git_repos.path), cache)
    assert caught.value.place == PLACE
    assert "refused" in caught.value.message or "empty" in caught.value.message
    assert not marker.exists()
    assert not cache.exists()


def test_local_repository_is_fetched_when_allowed(
    app: WorkRepo, git_repos: RepoRoot, cache: Path
) -> None:
    for url in (f"file://{app.path}", str(app.path)):
        request = FetchRequest("app", url, "main", None, PATHS, "--repo", allow_file=True)
        checkout = fetch_sources([request], cache_dir=cache)["app"]
        assert checkout.commit == app.rev_parse("main")
        assert (checkout.path / ".devcontainer.json").read_text() == "{}"


def test_sources_are_fetched_in_parallel(
    git_repos: RepoRoot, git_daemon: GitDaemon, git_http: GitHttpServer, cache: Path
) -> None:
    expected = {}
    requests = []
    for i in range(5):
        repo = git_repos.create(f"svc{i}")
        repo.write(".devcontainer/devcontainer.json", f'{{"name": "svc{i}"}}')
        expected[f"svc{i}"] = repo.commit()
        url = (git_daemon if i % 2 else git_http).url(f"svc{i}")
        requests.append(FetchRequest(f"svc{i}", url, "main", None, PATHS, f"/spec/sources/{i}"))

    checkouts = fetch_sources(requests, cache_dir=cache, token=GIT_HTTP_TOKEN)

    assert {name: c.commit for name, c in checkouts.items()} == expected
    for name, checkout in checkouts.items():
        assert (
            checkout.path / ".devcontainer/devcontainer.json"
        ).read_text() == f'{{"name": "{name}"}}'


def test_first_failing_source_is_reported_by_its_place(
    app: WorkRepo, git_daemon: GitDaemon, cache: Path
) -> None:
    requests = [
        FetchRequest("ok", git_daemon.url("app"), "main", None, PATHS, "/spec/sources/0"),
        FetchRequest("bad", git_daemon.url("app"), "nope", None, PATHS, "/spec/sources/1"),
        FetchRequest("worse", git_daemon.url("none"), "main", None, PATHS, "/spec/sources/2"),
    ]
    with pytest.raises(DevjobsError) as caught:
        fetch_sources(requests, cache_dir=cache)
    assert caught.value.place == "/spec/sources/1"


def test_concurrent_plans_share_one_checkout(
    app: WorkRepo, git_daemon: GitDaemon, cache: Path
) -> None:
    results: list[Checkout] = []
    errors: list[BaseException] = []

    def plan() -> None:
        try:
            results.append(fetch_one(git_daemon.url("app"), cache))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=plan) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({c.path for c in results}) == 1
    assert files_in(results[0].path)[".devcontainer.json"] == "{}"
    assert not list((cache / "git").glob("*/trees/.tmp-*"))


def test_symlinks_leaving_the_checkout_are_not_materialised(
    git_repos: RepoRoot, git_daemon: GitDaemon, cache: Path
) -> None:
    repo = git_repos.create("app")
    repo.write(".devcontainer/devcontainer.json", "{}")
    repo.symlink(".devcontainer/inside.json", "devcontainer.json")
    repo.symlink(".devcontainer/passwd", "/etc/passwd")
    repo.symlink(".devcontainer/parent", "../..")
    repo.symlink(".devcontainer/up", "..")  # the checkout root: inside
    repo.symlink(".devcontainer/escape", "up/..")  # lexically inside, physically outside
    repo.commit()

    checkout = fetch_one(git_daemon.url("app"), cache)

    assert files_in(checkout.path) == {
        ".devcontainer/devcontainer.json": "{}",
        ".devcontainer/inside.json": "-> devcontainer.json",
        ".devcontainer/up": "-> ..",
    }


def test_submodules_are_not_followed(
    git_repos: RepoRoot, git_daemon: GitDaemon, cache: Path
) -> None:
    lib = git_repos.create("lib")
    lib.write("x", "x")
    lib_sha = lib.commit()
    repo = git_repos.create("app")
    repo.write(".devcontainer/devcontainer.json", "{}")
    repo.git("add", ".devcontainer/devcontainer.json")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{lib_sha},.devcontainer/lib")
    repo.git("commit", "-qm", "with submodule")

    checkout = fetch_one(git_daemon.url("app"), cache)

    assert files_in(checkout.path) == {".devcontainer/devcontainer.json": "{}"}


def test_silent_server_times_out(cache: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(DevjobsError) as caught:
            fetch_one(f"git://127.0.0.1:{port}/app", cache, timeout=1.0)
    assert caught.value.message == f"git://127.0.0.1:{port}/app: timed out after 1s"


def test_cache_defaults_to_the_environment_override(
    app: WorkRepo, git_daemon: GitDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVJOBS_CACHE_DIR", str(tmp_path / "elsewhere"))
    request = FetchRequest("app", git_daemon.url("app"), "main", None, PATHS, PLACE)
    checkout = fetch_sources([request])["app"]
    assert checkout.path.is_relative_to(tmp_path / "elsewhere" / "git")


def test_invalid_paths_are_refused(app: WorkRepo, git_daemon: GitDaemon, cache: Path) -> None:
    for bad in ("../etc/", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(DevjobsError, match="relative to the repository root"):
            fetch_one(git_daemon.url("app"), cache, paths=(bad,))


def test_token_never_reaches_a_command_line(
    app: WorkRepo,
    git_http: GitHttpServer,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))  # git logs the argv of every process
    monkeypatch.setenv("DEVJOBS_GIT_TOKEN", GIT_HTTP_TOKEN)

    fetch_one(git_http.url("app"), cache, token=None)

    logged = trace.read_text()
    assert "remote-http" in logged  # the trace did see the transport
    assert all(secret not in logged for secret in TOKEN_FORMS)


def test_url_rewritten_by_user_config_to_a_refused_transport_still_fails(
    app: WorkRepo, cache: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    Path(os.environ["GIT_CONFIG_GLOBAL"]).write_text(
        f'[url "ext::sh -c touch% {marker}% #"]\n\tinsteadOf = git://evil.invalid/\n'
    )
    with pytest.raises(DevjobsError) as caught:
        fetch_one("git://evil.invalid/app", cache)
    assert caught.value.place == PLACE
    assert not marker.exists()


def test_silent_http_server_times_out(cache: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(DevjobsError) as caught:
            fetch_one(f"http://127.0.0.1:{port}/app", cache, timeout=1.0)
    assert caught.value.place == PLACE
    assert caught.value.message.startswith(f"http://127.0.0.1:{port}/app: ")
    assert "timed out" in caught.value.message or "too slow" in caught.value.message


def _literal(repo: WorkRepo, kind: str, body: bytes) -> str:
    return repo.git("hash-object", "-t", kind, "--literally", "-w", "--stdin", input=body)


def test_commit_with_a_malformed_author_date_is_still_fetched(
    git_repos: RepoRoot, git_daemon: GitDaemon, cache: Path
) -> None:
    repo = git_repos.create("app")
    repo.write(".devcontainer/devcontainer.json", "{}")
    repo.commit()
    tree = repo.rev_parse("HEAD^{tree}")
    body = f"tree {tree}\nauthor A <a@b> 1700000000 +00000\ncommitter A <a@b> 1 +0\n\nold\n"
    repo.git("update-ref", "refs/heads/main", _literal(repo, "commit", body.encode()))

    checkout = fetch_one(git_daemon.url("app"), cache)

    assert files_in(checkout.path) == {".devcontainer/devcontainer.json": "{}"}


def test_tree_with_a_dot_git_entry_is_refused(
    git_repos: RepoRoot, git_daemon: GitDaemon, cache: Path
) -> None:
    repo = git_repos.create("app")
    repo.write("x", "[core]\n\tfsmonitor = touch /tmp/pwned\n")
    blob = repo.git("hash-object", "-w", "x")
    inner = _literal(repo, "tree", b"100644 config\0" + bytes.fromhex(blob))
    devcontainer = _literal(repo, "tree", b"40000 .git\0" + bytes.fromhex(inner))
    root = _literal(repo, "tree", b"40000 .devcontainer\0" + bytes.fromhex(devcontainer))
    body = f"tree {root}\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\nevil\n"
    repo.git("update-ref", "refs/heads/main", _literal(repo, "commit", body.encode()))

    with pytest.raises(DevjobsError) as caught:
        fetch_one(git_daemon.url("app"), cache)

    assert caught.value.place == PLACE
    assert caught.value.message.endswith(
        "the repository holds an unsafe path '.devcontainer/.git/config'"
    )
    assert not list((cache / "git").glob("*/trees/*"))


@pytest.mark.parametrize("form", ["ssh://git@localhost{path}", "git@localhost:{path}"])
def test_ssh_urls_reach_git_s_ssh_transport(
    app: WorkRepo, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """ssh is stood in for by a program that runs the remote command locally: what is
    tested is devjobs' URL handling and git's ssh transport, not an sshd."""
    fake_ssh = tmp_path / "fake-ssh"
    calls = tmp_path / "ssh-calls"
    fake_ssh.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nshift\nexec sh -c "$*"\n')
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(fake_ssh))
    Path(os.environ["GIT_CONFIG_GLOBAL"]).write_text("[ssh]\n\tvariant = simple\n")

    checkout = fetch_one(form.format(path=app.path), cache)

    assert checkout.commit == app.rev_parse("main")
    assert (checkout.path / ".devcontainer.json").read_text() == "{}"
    assert f"localhost git-upload-pack '{app.path}'" in calls.read_text()


@pytest.mark.parametrize(
    ("branch", "commit", "message"),
    [
        ("-upload-pack=x", None, "'-upload-pack=x' is not a valid branch name"),
        ("a..b", None, "'a..b' is not a valid branch name"),
        ("main\n", None, "is not a valid branch name"),
        ("", None, "'' is not a valid branch name"),
        (None, "--all", "commit '--all' is not a hexadecimal sha"),
        (None, "HEAD~1", "commit 'HEAD~1' is not a hexadecimal sha"),
        (None, "abc", "commit 'abc' is not a hexadecimal sha"),
    ],
)
def test_bad_branch_or_commit_fails_before_anything_is_done(
    cache: Path, branch: str | None, commit: str | None, message: str
) -> None:
    request = FetchRequest(
        "app", "git://127.0.0.1:9/app", branch, commit, PATHS, PLACE,
        branch_place="/spec/sources/0/branch", commit_place="/spec/environment/commitSha",
    )  # fmt: skip
    with pytest.raises(DevjobsError) as caught:
        fetch_sources([request], cache_dir=cache)
    assert caught.value.place == (
        "/spec/sources/0/branch" if commit is None else "/spec/environment/commitSha"
    )
    assert message in caught.value.message
    assert not cache.exists()
