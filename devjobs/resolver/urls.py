"""Which repository URLs devjobs hands to git, and how URLs appear in messages.

A URL in a Project CR is untrusted: git interprets some strings as commands (`ext::`),
file descriptors (`fd::`), options (`-u...`, `--upload-pack=...`, `ssh://-oProxyCommand=`)
or local paths. So the policy is an allow-list of git's URL forms, checked before git
ever sees the string, and each refusal says what was wrong without echoing a password.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

from devjobs.errors import DevjobsError

NETWORK_SCHEMES = ("https", "http", "ssh", "git")
"""Schemes accepted from any source; `file` only when the URL came from the command line."""

_TRANSPORT = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")
"""git's `<transport>::<address>` form (remote helpers such as `ext::` and `fd::`)."""
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/@\s'\"]+)@")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?)$")
_SCP_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def _refuse(place: str, shown: str, reason: str) -> DevjobsError:
    return DevjobsError(place, f"repository URL {shown!r} is refused: {reason}")


def check_url(url: str, *, place: str, allow_file: bool = False) -> str:
    """Return the URL if the policy accepts it, else raise DevjobsError(place, reason).

    Accepted: https://, http://, ssh://, git://, scp-like `[user@]host:path`, and
    (with `allow_file`, i.e. given on the command line) file:// and local paths.
    A path beginning with `-` after the host of a scheme URL (`https://h/-x`) is
    accepted: git sends it as a path, never as an option. Credentials embedded in the
    URL are never echoed.
    """
    shown = redact(url)
    if not url.strip():
        raise DevjobsError(place, "repository URL is empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url) or url != url.strip():
        raise _refuse(place, shown, "it contains control characters or surrounding whitespace")
    if url.startswith("-"):
        raise _refuse(place, shown, "it begins with '-' and git would read it as an option")
    if transport := _TRANSPORT.match(url):
        raise _refuse(
            place,
            shown,
            f"git transport '{transport.group(1)}::' is not allowed "
            "(use https://, http://, ssh://, git:// or user@host:path)",
        )
    if " " in url and (_SCHEME.match(url) or _is_scp_like(url)):
        raise _refuse(place, shown, "it contains a space (percent-encode it as %20)")
    if scheme_match := _SCHEME.match(url):
        return _check_scheme_url(url, scheme_match.group(1).lower(), place, shown, allow_file)
    if _is_scp_like(url):
        _check_scp_like(url, place, shown)
        return url
    if not allow_file:
        raise _refuse(
            place,
            shown,
            "local paths are allowed only on the command line "
            "(use https://, http://, ssh://, git:// or user@host:path)",
        )
    return url


def _check_scheme_url(url: str, scheme: str, place: str, shown: str, allow_file: bool) -> str:
    if scheme == "file":
        if not allow_file:
            raise _refuse(place, shown, "file:// URLs are allowed only on the command line")
        return url
    if scheme not in NETWORK_SCHEMES:
        raise _refuse(
            place,
            shown,
            f"scheme '{scheme}://' is not allowed (use https://, http://, ssh:// or git://)",
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise _refuse(place, shown, f"it is not a valid URL ({err})") from None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if userinfo.startswith("-") or hostport.startswith("-"):
        raise _refuse(place, shown, "its user or host begins with '-' (an ssh option)")
    host = hostport if hostport.startswith("[") else hostport.partition(":")[0]
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    if not host:
        raise _refuse(place, shown, "it has no host")
    if not _HOST.match(host):
        raise _refuse(place, shown, f"host {host!r} is not a valid host name")
    if port is not None and not 0 < port < 65536:
        raise _refuse(place, shown, f"port {port} is out of range")
    if not parts.path.strip("/"):
        raise _refuse(place, shown, "it names no repository path")
    return url


def _is_scp_like(url: str) -> bool:
    """git's rule: a ':' before any '/' (and not a scheme URL) means `[user@]host:path`."""
    colon = url.find(":")
    slash = url.find("/")
    return colon > 0 and (slash == -1 or colon < slash)


def _check_scp_like(url: str, place: str, shown: str) -> None:
    first_colon = url.find(":")
    if "[" in url[:first_colon]:
        host_end = url.find("]:")
        if host_end == -1:
            raise _refuse(place, shown, "it is not a valid [host]:path URL")
        userhost, path = url[: host_end + 1], url[host_end + 2 :]
    else:
        userhost, path = url[:first_colon], url[first_colon + 1 :]
    user, _, host = userhost.rpartition("@")
    if "@" in userhost and not _SCP_USER.match(user):
        raise _refuse(place, shown, f"user {user!r} is not a valid ssh user name")
    if host.startswith("-"):
        raise _refuse(place, shown, "its host begins with '-' (an ssh option)")
    if not _HOST.match(host):
        raise _refuse(place, shown, f"host {host!r} is not a valid host name")
    if not path.strip("/"):
        raise _refuse(place, shown, "it names no repository path")
    if path.startswith("-"):
        raise _refuse(place, shown, "its path begins with '-' and git would read it as an option")


def redact(url: str) -> str:
    """The URL with any password or token in it replaced by '***'.

    For http(s), a user name with no password is also hidden: tokens are often passed
    as the user name (`https://<token>@host/...`). ssh user names (`git@`) are kept.
    """
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@", url)
    if not match:
        return url
    scheme, userinfo = match.group(1), match.group(2)
    user, has_password, _ = userinfo.partition(":")
    if has_password:
        hidden = f"{user}:***"
    elif scheme.lower() in ("http://", "https://"):
        hidden = "***"
    else:
        return url
    return f"{scheme}{hidden}@{url[match.end() :]}"


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Free text (e.g. git's stderr) with URL credentials and the given secrets hidden."""
    text = _USERINFO_IN_TEXT.sub(lambda m: redact(m.group(0) + "/").removesuffix("/"), text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def userinfo_secret(url: str) -> str | None:
    """The password (or http user-name token) embedded in the URL, to scrub from output."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@", url)
    if not match:
        return None
    user, has_password, password = match.group(2).partition(":")
    if has_password:
        return password or None
    return user if match.group(1).lower() in ("http://", "https://") else None


def repo_basename(url: str) -> str:
    """`https://h/org/app.git` -> `app`; `git@h:org/app` -> `app`; `/srv/app/.git` -> `app`."""
    path = url
    if _SCHEME.match(url):
        path = urlsplit(url).path
    elif _is_scp_like(url):
        path = url.rpartition(":")[2]
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    while parts and parts[-1] in (".git", "."):
        parts.pop()
    name = parts[-1] if parts else ""
    return name.removesuffix(".git")


def cache_key(url: str) -> str:
    """A stable directory name for a remote: same repository, same key, no secret in it.

    Scheme and host are case-folded and a trailing `/` or `.git` ignored; credentials
    are dropped entirely, so different tokens for one repository share one cache.
    """
    text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1", url)
    if scheme := _SCHEME.match(text):
        parts = urlsplit(text)
        text = f"{scheme.group(1).lower()}://{parts.netloc.lower()}{parts.path}"
    text = text.rstrip("/").removesuffix(".git").rstrip("/")
    return hashlib.sha256(text.encode()).hexdigest()[:32]
