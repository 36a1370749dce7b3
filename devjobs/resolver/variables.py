"""`${...}` variables in devcontainer.json, substituted as the reference does when it
reads the file (@devcontainers/cli 0.89.0, `read-configuration`).

- `${localEnv:NAME}` / `${env:NAME}`: the variable, else the default after a second
  `:` (only up to a third `:`, as the reference splits on every colon), else "".
  `${localEnv}` with no name is an error.
- `${localWorkspaceFolder}`, `${localWorkspaceFolderBasename}`,
  `${containerWorkspaceFolder}`, `${containerWorkspaceFolderBasename}`.
- Anything else (`${devcontainerId}`, `${containerEnv:X}`, `${HOME}`) stays as written.

Two targets: "local" reads the caller's environment and the checkout path; "cluster"
never reads the caller's environment (a plan must not leak a developer's or a CI
runner's secrets into a cluster), so environment variables become their default,
with a warning, and `${localWorkspaceFolder}` is the workspace folder in the pod.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from devjobs.errors import DevjobsError

# Like the reference's /\$\{(.*?)\}/g: JavaScript's `.` excludes these four.
VARIABLE = re.compile(r"\$\{([^\n\r\u2028\u2029]*?)\}")

Place = Callable[[], str]
"""Where the string being substituted is, computed only when a message needs it."""


@dataclass
class Variables:
    """The values variables resolve to; collects warnings as strings are substituted."""

    local_workspace_folder: str
    local_workspace_folder_basename: str
    container_workspace_folder: str | None
    env: Mapping[str, str] | None
    """The caller's environment (target local), or None: never read (target cluster)."""
    warnings: list[str] = field(default_factory=list)
    _warned: set[str] = field(default_factory=set, repr=False)

    def substitute(self, text: str, place: Place) -> str:
        """`text` with every known variable replaced."""
        if "${" not in text:
            return text
        return VARIABLE.sub(lambda match: self._value(match, place), text)

    def _value(self, match: re.Match[str], place: Place) -> str:
        name, *args = match.group(1).split(":")
        if name in ("env", "localEnv"):
            return self._environment(match.group(), args, place)
        if name == "localWorkspaceFolder":
            return self.local_workspace_folder
        if name == "localWorkspaceFolderBasename":
            return self.local_workspace_folder_basename
        if self.container_workspace_folder is not None:
            if name == "containerWorkspaceFolder":
                return self.container_workspace_folder
            if name == "containerWorkspaceFolderBasename":
                return posixpath.basename(self.container_workspace_folder)
        return match.group()

    def _environment(self, written: str, args: list[str], place: Place) -> str:
        if not args:
            raise DevjobsError(place(), f"{written} names no environment variable")
        default = args[1] if len(args) > 1 else ""
        if self.env is not None:
            value = self.env.get(args[0])
            return value if value is not None else default
        outcome = f"its default {default!r}" if len(args) > 1 else "an empty string"
        warning = (
            f"{place()}: {written} is not read for target cluster (the caller's environment "
            f"never reaches a cluster); replaced by {outcome}"
        )
        if warning not in self._warned:
            self._warned.add(warning)
            self.warnings.append(warning)
        return default
