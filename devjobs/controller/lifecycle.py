"""When each lifecycle point fires, from what Catalyst shows: its image builds, the
workload, and the Jobs devjobs already created for the current commit.

- `PostBuild` (and with it the blocking `PreDeploy`) fires when the Project template's
  builds (`catalyst.build_job_name`) have all succeeded for this commit; with no builds
  (production and development mode), as soon as the commit is known and its target
  namespace holds the workload Deployment (the operator creates it with the namespace),
  or the Environment has left provisioning. Not only when the phase leaves Provisioning:
  the phase waits for the first pod to be Ready, which waits on the PreDeploy gate
  (`gates`). Never from `status.phase` alone: Catalyst
  stays `Ready` while it rebuilds a new commit. Once devjobs' Jobs exist for this commit
  the point has fired (build Jobs may be garbage-collected; a restart must not forget).
- `PostDeploy` fires when the workload is Ready for this commit and the PreDeploy Jobs
  succeeded.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from devjobs import catalyst
from devjobs.controller.observe import BuildObs, Observed
from devjobs.kube.conditions import is_sha


class Builds(enum.Enum):
    """The image builds of the current commit."""

    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"


def builds_state(observed: Observed, current: Mapping[str, str]) -> Builds:
    shas = {v[:7] for v in current.values() if is_sha(v)}
    pinned = bool(shas) and all(is_sha(v) for v in current.values() if v)

    def at_commit(build: BuildObs) -> bool:
        return any(build.name.endswith(f"-{sha}") for sha in shas)

    relevant: dict[str, list[BuildObs]] = {}
    for build in observed.builds:
        name = build.build or build.name
        if pinned and not at_commit(build):
            continue
        relevant.setdefault(name, []).append(build)
    if not pinned:
        # Only a branch: the newest build of each kind is this commit's.
        relevant = {k: [max(v, key=lambda b: (b.created, b.name))] for k, v in relevant.items()}
    wanted = list(observed.expected_builds) or sorted(relevant)
    if not wanted:
        provisioning = observed.phase in catalyst.PROVISIONING_PHASES
        deployed = observed.workload is not None and any(current.values())
        return Builds.DONE if deployed or not provisioning else Builds.WAITING
    states = []
    for name in wanted:
        found = relevant.get(name, [])
        if any(b.succeeded for b in found):
            states.append(Builds.DONE)
        elif found and all(b.failed for b in found):
            states.append(Builds.FAILED)
        else:
            states.append(Builds.WAITING)
    if Builds.FAILED in states:
        return Builds.FAILED
    return Builds.DONE if all(s is Builds.DONE for s in states) else Builds.WAITING


def workload_at_commit(observed: Observed, current: Mapping[str, str]) -> bool | None:
    """Whether the workload runs the current commit: True/False when it says so (devjobs'
    clone init containers carry the revision; Catalyst's images are tagged with the
    commit), None when nothing in it names a commit."""
    workload = observed.workload
    if workload is None:
        return False
    wanted = {v for v in current.values() if v}
    if workload.revisions:
        return all(r in wanted for r in workload.revisions)
    tags = [image.rsplit(":", 1)[1] for image in workload.images if ":" in image.split("/")[-1]]
    tags = [t for t in tags if is_sha(t)]
    if tags:
        return any(v.startswith(t) or t == v for t in tags for v in wanted)
    return None


def workload_ready(observed: Observed, current: Mapping[str, str]) -> bool:
    """The workload is Ready, and not known to run another commit."""
    ready = observed.workload is not None and observed.workload.ready
    return ready and workload_at_commit(observed, current) is not False


def post_build_fired(
    observed: Observed, current: Mapping[str, str], builds: Builds, fired_by_jobs: set[str]
) -> bool:
    """`PostBuild` (and `PreDeploy`) fire: the builds are done, or devjobs' Jobs of this
    commit exist (it fired before), or the workload already runs this commit, Ready."""
    if builds is Builds.DONE or fired_by_jobs:
        return True
    at_commit = workload_at_commit(observed, current)
    return bool(at_commit) and observed.workload is not None and observed.workload.ready
