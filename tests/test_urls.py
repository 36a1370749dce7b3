"""The URL policy: what git may be handed, and how URLs are shown."""

from __future__ import annotations

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.urls import cache_key, check_url, redact, redact_text, repo_basename

PLACE = "project.yaml: /spec/sources/0/repositoryUrl"


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/app.git",
        "https://github.com/org/app",
        "http://127.0.0.1:8080/app",
        "https://x-access-token:secret@github.com/org/app.git",
        "ssh://git@github.com/org/app.git",
        "ssh://git@github.com:2222/org/app.git",
        "git://127.0.0.1:9418/app",
        "git@github.com:org/app.git",
        "github.com:org/app.git",
        "git@[::1]:org/app.git",
        "https://[::1]:8443/app",
        "HTTPS://GitHub.com/org/app",
        "https://x/-bad",
    ],
)
def test_network_urls_are_accepted_unchanged(url: str) -> None:
    assert check_url(url, place=PLACE) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ext::sh -c touch% /tmp/pwned", "transport 'ext::' is not allowed"),
        ("ext::sh", "transport 'ext::' is not allowed"),
        ("fd::3", "transport 'fd::' is not allowed"),
        ("transport::https://h/app", "transport 'transport::' is not allowed"),
        ("-u/tmp/evil", "begins with '-'"),
        ("--upload-pack=touch /tmp/pwned", "begins with '-'"),
        ("file:///srv/app", "file:// URLs are allowed only on the command line"),
        ("/srv/app", "local paths are allowed only on the command line"),
        ("./app", "local paths are allowed only on the command line"),
        ("../app", "local paths are allowed only on the command line"),
        ("app", "local paths are allowed only on the command line"),
        ("ftp://h/app", "scheme 'ftp://' is not allowed"),
        ("rsync://h/app", "scheme 'rsync://' is not allowed"),
        ("ssh://-oProxyCommand=touch%20/tmp/pwned/app", "begins with '-'"),
        ("ssh://-oProxyCommand=x@h/app", "begins with '-'"),
        ("-oProxyCommand=x:path", "begins with '-'"),
        ("user@-host:path", "host begins with '-'"),
        ("git@h:-path", "path begins with '-'"),
        ("https://h/app\n", "control characters"),
        ("https://h/app\nhttps://evil/", "control characters"),
        ("https://h/a\tpp", "control characters"),
        (" https://h/app", "surrounding whitespace"),
        ("https://h/my app", "contains a space"),
        ("https:///app", "no host"),
        ("https://h", "names no repository path"),
        ("https://h:99999/app", "not a valid URL"),
        ("https://bad_host!/app", "not a valid host name"),
        ("git@h:", "names no repository path"),
    ],
)
def test_refused_urls_name_the_place_and_the_reason(url: str, reason: str) -> None:
    with pytest.raises(DevjobsError) as caught:
        check_url(url, place=PLACE)
    assert caught.value.place == PLACE
    assert reason in caught.value.message
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("url", ["", "   ", "\n"])
def test_empty_url_is_refused(url: str) -> None:
    with pytest.raises(DevjobsError, match="repository URL is empty"):
        check_url(url, place=PLACE)


@pytest.mark.parametrize("url", ["file:///srv/app", "/srv/app", "./app", "/srv/my repos/app"])
def test_local_urls_are_accepted_from_the_command_line(url: str) -> None:
    assert check_url(url, place="--repo", allow_file=True) == url


def test_dangerous_forms_stay_refused_on_the_command_line() -> None:
    for url in ("ext::sh -c id", "-u/x", "fd::0", "ssh://-oProxyCommand=id/app"):
        with pytest.raises(DevjobsError):
            check_url(url, place="--repo", allow_file=True)


def test_refusal_never_echoes_a_password() -> None:
    with pytest.raises(DevjobsError) as caught:
        check_url("ftp://me:hunter2@h/app", place=PLACE)
    assert "hunter2" not in str(caught.value)
    assert "me:***@h" in str(caught.value)


def test_refusal_never_echoes_a_token_given_as_user_name() -> None:
    with pytest.raises(DevjobsError) as caught:
        check_url("https://ghp_secret123@h/my app", place=PLACE)
    assert "ghp_secret123" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:tok@h/app", "https://user:***@h/app"),
        ("https://tok@h/app", "https://***@h/app"),
        ("ssh://git@h/app", "ssh://git@h/app"),
        ("ssh://git:pw@h/app", "ssh://git:***@h/app"),
        ("git@h:org/app", "git@h:org/app"),
        ("https://h/app", "https://h/app"),
    ],
)
def test_redact_hides_passwords_and_http_tokens(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_redact_text_hides_credentials_in_git_messages() -> None:
    text = "fatal: unable to access 'https://u:s3cret@h/app/': 401\nhint: tok123"
    cleaned = redact_text(text, ("tok123",))
    assert "s3cret" not in cleaned and "tok123" not in cleaned
    assert "https://u:***@h/app/" in cleaned


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://h/org/app.git", "app"),
        ("https://h/org/app", "app"),
        ("https://h/org/app/", "app"),
        ("git@h:org/app", "app"),
        ("git@h:app.git", "app"),
        ("ssh://git@h:22/org/app.git", "app"),
        ("/srv/app/.git", "app"),
        ("file:///srv/app.git", "app"),
    ],
)
def test_repo_basename(url: str, name: str) -> None:
    assert repo_basename(url) == name


def test_cache_key_ignores_credentials_case_and_git_suffix() -> None:
    key = cache_key("https://github.com/org/app")
    assert cache_key("https://tok:x@GitHub.com/org/app.git/") == key
    assert cache_key("HTTPS://github.com/org/app.git") == key
    assert cache_key("https://github.com/org/other") != key
    assert cache_key("https://github.com/Org/app") != key
    assert len(key) == 32
