"""Which of the workload's gated pods may start: the PreDeploy gate, pure.

`deploy/predeploy-gate.yaml` (a MutatingAdmissionPolicy) puts the scheduling gate
`vocabulary.PREDEPLOY_GATE` on every new workload pod (`app=web`) in an environment
namespace, so no new pod of the workload is scheduled, let alone serves, until devjobs
removes the gate (`OpenGate`). A gated pod is opened when the PreDeploy jobs of the
commit it belongs to succeeded:

- a pod whose image is tagged with a commit (helm mode: the operator's build image is
  `<registry>/<project>/<build>-<env>:<commit>`) belongs to that commit. One of the
  current commit opens once the current PreDeploy jobs succeeded; one of an earlier commit
  (a replacement of a previous pod) unless a PreDeploy Job of that commit, still in the
  target namespace, is seen not to have succeeded (it failed, or still runs);
- any other pod (production and development mode: the operator's pod template names no
  commit, and a new commit alone does not change it) belongs to the commit the
  Environment is at when devjobs opens it: the current one. devjobs records the pod's
  template and that commit (`kube.openings`) before it opens the pod, so that a later pod
  of the same template (a replacement: a drained node, a deleted pod) is known as one
  of that earlier commit and opens unless that commit is blocked, even while the
  current commit's PreDeploy jobs fail.

A pod of the current commit opens only when it also runs the commit's `runAs:
InitContainer` jobs (devjobs' init containers as `kube.workload` applies them): when the
operator replaced the whole Deployment spec (production mode, on a new image), its pods
lack them and stay gated while devjobs applies them again, and the pods of that spec
start, gated, with them. When a PreDeploy job fails nothing is opened: the new pods
never start, and the Deployment's RollingUpdate (maxUnavailable 0) keeps the previous
ones serving. Pods created before the policy existed carry no gate and are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from devjobs.controller.actions import OpenGate, RecordOpenings
from devjobs.controller.observe import GatedPod, Observed
from devjobs.kube import vocabulary as v
from devjobs.kube.conditions import is_sha
from devjobs.kube.jobs import newest
from devjobs.kube.jobstate import Phase, runs_as
from devjobs.kube.openings import Opening, configmap, with_opening
from devjobs.resolver.models import Trigger


def pod_commits(pod: GatedPod) -> set[str]:
    """The commits the pod's image tags name (helm mode); empty when none does."""
    tags = (image.rsplit(":", 1)[1] for image in pod.images if ":" in image.split("/")[-1])
    return {t for t in tags if is_sha(t)}


def _names(tag: str, commit: str) -> bool:
    return bool(commit) and (commit == tag or commit.startswith(tag))


def runs_inits(pod: GatedPod, wanted: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the pod runs exactly devjobs' wanted init containers, and no other of
    devjobs'. Compared by what they run (`jobstate.runs_as`): admission adds the
    service-account token's volume mount to every container of a pod."""
    have = {name: json.loads(text) for name, text in pod.init_containers}
    ours = {name for name in have if name.startswith(v.INIT_PREFIX)}
    if ours != {str(c.get("name")) for c in wanted}:
        return False
    return all(runs_as(c, have[str(c.get("name"))]) for c in wanted)


def blocked_commits(observed: Observed) -> set[str]:
    """Commits with a PreDeploy Job whose newest run is seen not to have succeeded."""
    by_commit: dict[str, list[Any]] = {}
    for job in observed.jobs:
        if job.trigger == Trigger.PRE_DEPLOY.value and job.commit and not job.deleting:
            by_commit.setdefault(job.commit, []).append(job)
    return {
        commit
        for commit, jobs in by_commit.items()
        if any(j.state.phase is not Phase.SUCCEEDED for j in newest(jobs).values())
    }


def replaced(pod: GatedPod, observed: Observed, now: set[str]) -> Opening | None:
    """The opening of the pod's template at an earlier commit, when the pod names no
    commit itself: it replaces a pod devjobs opened before (`kube.openings`)."""
    if pod_commits(pod) or not pod.template:
        return None
    for opening in observed.openings:
        if opening.template == pod.template and not set(opening.commits) <= now:
            return opening
    return None


def open_gates(
    observed: Observed,
    current: Mapping[str, str],
    *,
    pre_deploy_done: bool,
    wanted_inits: Sequence[Mapping[str, Any]],
) -> list[RecordOpenings | OpenGate]:
    """The gated pods to open this round (see the module doc), after the record of the
    templates opened at the current commit when it changes. `pre_deploy_done`: the
    current commit's PreDeploy point fired and its Jobs all succeeded; `wanted_inits`:
    the init containers of its InitContainer jobs (as rendered for the workload)."""
    now = {c for c in current.values() if c}
    blocked: set[str] | None = None
    record = observed.openings
    actions: list[RecordOpenings | OpenGate] = []
    for pod in observed.gated_pods:
        tags = pod_commits(pod)
        earlier = replaced(pod, observed, now)
        if earlier is None and (not tags or any(_names(t, c) for t in tags for c in now)):
            ok = pre_deploy_done and runs_inits(pod, wanted_inits)
            if ok and not tags and pod.template:
                record = with_opening(record, pod.template, now)
        else:
            if blocked is None:
                blocked = blocked_commits(observed)
            named = earlier.commits if earlier is not None else tags
            ok = not any(_names(t, c) for t in named for c in blocked)
        if ok:
            actions.append(OpenGate(pod.name, pod.uid, pod.gate_index))
    if record != observed.openings:
        actions.insert(0, RecordOpenings(configmap(observed.environment, record)))
    return actions


def open_all(observed: Observed) -> list[OpenGate]:
    """Every gated pod: in a mode devjobs does not follow (`catalyst.unsupported_mode`)
    it runs no PreDeploy jobs, so it holds nothing (compose mode's `web` service matches
    the policy's selector)."""
    return [OpenGate(pod.name, pod.uid, pod.gate_index) for pod in observed.gated_pods]


def held(observed: Observed, current: Mapping[str, str]) -> int:
    """How many gated pods of the current commit (or naming none) are held."""
    now = {c for c in current.values() if c}
    return sum(
        1
        for pod in observed.gated_pods
        if replaced(pod, observed, now) is None
        and (not pod_commits(pod) or any(_names(t, c) for t in pod_commits(pod) for c in now))
    )
