"""Where a git token comes from and how it reaches git without being written anywhere.

The token goes to git only as an `http.extraHeader` in `GIT_CONFIG_*` environment
variables of the git process: never in argv (visible in `ps`), never in the URL (git
prints URLs and writes them to FETCH_HEAD), never in a config file of the cache. When
there is no token, git's own credential helpers apply as usual.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

TOKEN_VARIABLES = ("DEVJOBS_GIT_TOKEN", "GITHUB_TOKEN")
"""Environment variables read for an http(s) token, first set one wins."""


@dataclass(frozen=True)
class Token:
    """A secret and where it came from (the name is safe to print, the value never)."""

    value: str
    source: str

    def __repr__(self) -> str:
        return f"Token(source={self.source!r})"

    def header(self) -> str:
        """HTTP Basic `x-access-token:<token>`, the form GitHub and most forges accept."""
        basic = base64.b64encode(f"x-access-token:{self.value}".encode()).decode()
        return f"Authorization: Basic {basic}"

    def secrets(self) -> tuple[str, ...]:
        """Every form of the token that could show up in text, to scrub it."""
        return (self.value, self.header().removeprefix("Authorization: Basic "))


def find_token(explicit: str | None = None) -> Token | None:
    """The token given by the caller, else the first non-empty token variable."""
    if explicit:
        return Token(explicit, "the token given to devjobs")
    for name in TOKEN_VARIABLES:
        if value := os.environ.get(name, "").strip():
            return Token(value, name)
    return None


def config_env(config: dict[str, str]) -> dict[str, str]:
    """`git -c` settings as `GIT_CONFIG_COUNT/KEY_n/VALUE_n` variables (kept out of argv)."""
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env
