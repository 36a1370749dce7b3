"""The workspace: an emptyDir at the job's working directory, filled by a clone init
container at the Environment's commit before any setup step or job runs.

Credentials come from a Secret (keys `password`, optional `username`) or from Catalyst's
`catalyst-git-scripts` ConfigMap and its credential helper; never from the caller's
environment. The repository and revision reach the script as env vars, never spliced
into shell text. The git image may run as any user: the script changes the modes of what
it cloned only, never the mount point (owned by root).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_GIT_IMAGE = "alpine/git:2.45.2"
"""The image Catalyst's own build Jobs clone with."""
CATALYST_GIT_SCRIPTS = "catalyst-git-scripts"
CATALYST_WEB_URL = "http://catalyst-web.catalyst-system.svc.cluster.local:3000"
WORKSPACE_VOLUME = "devjobs-workspace"
SCRIPTS_VOLUME = "devjobs-git-scripts"
CLONE_CONTAINER = "devjobs-clone"

CLONE_SCRIPT = """\
set -eu
git config --global --add safe.directory '*'
if [ -n "${DEVJOBS_GIT_HELPER:-}" ]; then
  git config --global credential.helper "$DEVJOBS_GIT_HELPER"
fi
cd "$DEVJOBS_WORKSPACE"
git init -q .
git remote add origin "$DEVJOBS_REPOSITORY"
if git fetch -q --depth 1 origin "$DEVJOBS_REVISION"; then
  git checkout -q --detach FETCH_HEAD
else
  git fetch -q origin
  git checkout -q --detach "$DEVJOBS_REVISION"
fi
git log -1 --format='devjobs: checked out %H'
# Any user the job image runs as may write in its workspace: the clone's files and
# directories (not symlinks, which chmod would follow). Not the mount point: the
# emptyDir is writable by all already, and a non-root git image may not chmod it.
find . -mindepth 1 ! -type l -exec chmod a+rwX {} +
"""

SECRET_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'echo "username=${GIT_USERNAME:-x-access-token}"; echo "password=$GIT_PASSWORD"; }; f'
)


@dataclass(frozen=True)
class GitCredentials:
    """How the clone authenticates: `secret` names a Secret in the namespace; or
    `catalyst_installation_id` uses Catalyst's credential helper ConfigMap."""

    secret: str | None = None
    catalyst_installation_id: str | None = None


def clone_container(
    repository: str,
    revision: str,
    working_dir: str,
    image: str,
    credentials: GitCredentials,
    resources: dict[str, Any],
    security_context: dict[str, Any],
    volume: str = WORKSPACE_VOLUME,
    name: str = CLONE_CONTAINER,
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "DEVJOBS_REPOSITORY", "value": repository},
        {"name": "DEVJOBS_REVISION", "value": revision},
        {"name": "DEVJOBS_WORKSPACE", "value": working_dir},
        {"name": "HOME", "value": "/tmp"},
    ]
    mounts: list[dict[str, Any]] = [{"name": volume, "mountPath": working_dir}]
    if credentials.secret:
        env += [
            {"name": "DEVJOBS_GIT_HELPER", "value": SECRET_HELPER},
            _secret_env("GIT_USERNAME", credentials.secret, "username", optional=True),
            _secret_env("GIT_PASSWORD", credentials.secret, "password", optional=False),
        ]
    elif credentials.catalyst_installation_id:
        env += [
            {"name": "DEVJOBS_GIT_HELPER", "value": "/scripts/git-credential-catalyst.sh"},
            {"name": "INSTALLATION_ID", "value": credentials.catalyst_installation_id},
            {"name": "CATALYST_WEB_URL", "value": CATALYST_WEB_URL},
        ]
        mounts.append({"name": SCRIPTS_VOLUME, "mountPath": "/scripts", "readOnly": True})
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", CLONE_SCRIPT],
        "env": env,
        "volumeMounts": mounts,
        "resources": resources,
        "securityContext": security_context,
    }


def _secret_env(name: str, secret: str, key: str, optional: bool) -> dict[str, Any]:
    return {
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}},
    }


def volumes(credentials: GitCredentials, workspace: str = WORKSPACE_VOLUME) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = [{"name": workspace, "emptyDir": {}}]
    if credentials.catalyst_installation_id and not credentials.secret:
        result.append(
            {
                "name": SCRIPTS_VOLUME,
                "configMap": {"name": CATALYST_GIT_SCRIPTS, "defaultMode": 0o755},
            }
        )
    return result
