"""What the controller observed about one Environment, as plain frozen data.

Built from the API's JSON (dicts) by pure functions, so `decide.reconcile` can be tested
with hand-written objects and never sees a client. Everything the controller needs to
pick up after a restart is here and comes from the cluster: the Environment (its commit
pins, `status.phase`, conditions and the Manual request annotation), Catalyst's build
Jobs, the workload Deployment, and the Jobs devjobs created (labels and annotations say
which job, commit, trigger and request each one is for).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devjobs import catalyst
from devjobs.kube import naming
from devjobs.kube import vocabulary as v
from devjobs.kube.jobs import JobObs, LogTail, belongs_to, jobs_with_pods, log_tails
from devjobs.kube.jobstate import InitContainerRun, init_runs
from devjobs.kube.openings import Opening, read_openings
from devjobs.kube.podspec import RuntimeContext, runtime_context
from devjobs.resolver import environment as envmod
from devjobs.resolver.models import JobPlan


def parse_init_github_state(value: str | None) -> tuple[str, str] | None:
    """`<state>@<commit>` (`vocabulary.init_github_state_annotation`) -> (commit, state)."""
    state, _, commit = (value or "").partition("@")
    return (commit, state) if state and commit else None


@dataclass(frozen=True)
class ManualRequest:
    """The `devjobs.dev/run` annotation: which jobs, and an id that stays the same until
    the annotation is written again (so a restart does not start the jobs twice)."""

    value: str
    jobs: tuple[str, ...]
    request_id: str


@dataclass(frozen=True)
class BuildObs:
    """One of Catalyst's image build Jobs (`build-<build>-<sha7>`)."""

    name: str
    build: str
    succeeded: bool
    failed: bool
    created: str = ""


@dataclass(frozen=True)
class WorkloadObs:
    """The environment's workload Deployment, reduced to what the lifecycle needs."""

    name: str
    ready: bool
    """The rollout is complete: every replica updated, ready and available."""
    images: tuple[str, ...]
    revisions: tuple[str, ...]
    """`DEVJOBS_REVISION` of devjobs' clone init containers in the pod template."""
    init_containers: tuple[tuple[str, str], ...] = ()
    """(name, canonical JSON) of each init container in the pod template."""
    template_labels: tuple[tuple[str, str], ...] = ()
    init_runs: tuple[InitContainerRun, ...] = ()
    """devjobs' init containers in the workload's pods (labelled `WORKLOAD_LABEL`)."""
    github_states: tuple[tuple[str, str], ...] = ()
    """(annotation, value) of the Deployment's `init_github_state_annotation`s: the commit
    statuses of InitContainer jobs already posted, so a restart does not post them again."""

    check_runs: tuple[tuple[str, str], ...] = ()
    """(annotation, value) of the Deployment's `init_check_run_annotation`s: the check
    runs of InitContainer jobs as last posted, `<id>:<status>[:<conclusion>]@<commit>`."""

    def recorded_check_run(self, key: str) -> tuple[str, str] | None:
        """(commit, `<id>:<status>[:<conclusion>]`) last posted for InitContainer job
        `key`, or None."""
        value = dict(self.check_runs).get(v.init_check_run_annotation(key)) or ""
        record, _, commit = value.rpartition("@")
        return (commit, record) if record and commit else None

    def recorded_github_state(self, key: str) -> tuple[str, str] | None:
        """(commit, GitHub state) last posted for InitContainer job `key`, or None."""
        return parse_init_github_state(
            dict(self.github_states).get(v.init_github_state_annotation(key))
        )

    def github_state(self, key: str, commit: str) -> str | None:
        """The GitHub state last posted for InitContainer job `key` at `commit`, or None."""
        recorded = self.recorded_github_state(key)
        return recorded[1] if recorded is not None and recorded[0] == commit else None


@dataclass(frozen=True)
class GatedPod:
    """A workload pod held by devjobs' scheduling gate (`vocabulary.PREDEPLOY_GATE`)."""

    name: str
    uid: str
    gate_index: int
    """Where the gate is in `spec.schedulingGates` (the removal is guarded by it)."""
    images: tuple[str, ...]
    """Its containers' images (in helm mode tagged with the commit they were built at)."""
    init_containers: tuple[tuple[str, str], ...] = ()
    """(name, canonical JSON) of each init container: which InitContainer jobs it runs."""
    template: str = ""
    """Its pod template hash (`pod-template-hash`): which of the workload's templates."""


@dataclass(frozen=True)
class Observed:
    """Everything `reconcile` decides from, for one Environment."""

    environment: envmod.Environment
    phase: str
    conditions: tuple[Mapping[str, Any], ...]
    plan: JobPlan | None
    plan_error: str | None = None
    expected_builds: tuple[str, ...] = ()
    """Build names of the Project's template for this environment type."""
    builds: tuple[BuildObs, ...] = ()
    workload: WorkloadObs | None = None
    jobs: tuple[JobObs, ...] = ()
    manual: ManualRequest | None = None
    workload_name: str = catalyst.WORKLOAD_DEPLOYMENT
    log_tails: Mapping[str, LogTail] = dataclasses.field(default_factory=dict)
    runtime: RuntimeContext = dataclasses.field(default_factory=RuntimeContext)
    """What jobs in the build image get from the workload's main container."""
    """Job key -> its kept log tail."""
    installation_id: int | None = None
    """The Project's `spec.githubInstallationId`: whose GitHub App installation posts
    check runs for it (None: not set, or not a positive integer)."""
    gated_pods: tuple[GatedPod, ...] = ()
    """Workload pods of the target namespace that devjobs' gate holds (`controller.gates`)."""
    openings: tuple[Opening, ...] = ()
    """The pod templates devjobs opened the gate for, and at which commits (`kube.openings`)."""
    mode: str = catalyst.MODE_PRODUCTION
    """The operator's deployment mode for the Environment (`catalyst.deployment_mode`)."""


# --- builders from API JSON ---------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def manual_request(env: Mapping[str, Any]) -> ManualRequest | None:
    """The Manual request on an Environment, or None. Its id hashes the value with the
    time and manager of the write that last set it (from `managedFields`): stable while
    the annotation stands, new when someone asks again."""
    meta = _map(env.get("metadata"))
    value = _map(meta.get("annotations")).get(v.ANNOTATION_RUN)
    if not isinstance(value, str):
        return None
    jobs = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    key = f"f:{v.ANNOTATION_RUN}"
    stamp = ""
    for entry in _list(meta.get("managedFields")):
        fields = _map(_map(_map(entry).get("fieldsV1")).get("f:metadata")).get("f:annotations")
        if key in _map(fields):
            stamp = f"{entry.get('manager')}@{entry.get('time')}@{entry.get('operation')}"
    return ManualRequest(value, jobs, naming.digest([value, stamp], 12))


def expected_builds(project: Mapping[str, Any] | None, env_type: str) -> tuple[str, ...]:
    """`spec.templates[<type>].builds[].name` of the Project: what Catalyst builds."""
    template = _map(_map(_map(project).get("spec")).get("templates")).get(env_type)
    names = [_map(b).get("name") for b in _list(_map(template).get("builds"))]
    return tuple(n for n in names if isinstance(n, str) and n)


def build_obs(job: Mapping[str, Any]) -> BuildObs:
    meta = _map(job.get("metadata"))
    conds = {
        c.get("type"): c.get("status")
        for c in _list(_map(job.get("status")).get("conditions"))
        if isinstance(c, Mapping)
    }
    done = conds.get("Complete") == "True" or conds.get("SuccessCriteriaMet") == "True"
    failed = conds.get("Failed") == "True" or conds.get("FailureTarget") == "True"
    return BuildObs(
        name=str(meta.get("name", "")),
        build=str(_map(meta.get("labels")).get(catalyst.BUILD_NAME_LABEL, "")),
        succeeded=done,
        failed=failed and not done,
        created=str(meta.get("creationTimestamp") or ""),
    )


def gated_pod(pod: Mapping[str, Any]) -> GatedPod | None:
    """The pod as `GatedPod` when devjobs' gate holds it (and it is not going away)."""
    import json

    meta = _map(pod.get("metadata"))
    spec = _map(pod.get("spec"))
    gates = [str(_map(g).get("name", "")) for g in _list(spec.get("schedulingGates"))]
    if v.PREDEPLOY_GATE not in gates or meta.get("deletionTimestamp"):
        return None
    return GatedPod(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        gate_index=gates.index(v.PREDEPLOY_GATE),
        images=tuple(str(_map(c).get("image", "")) for c in _list(spec.get("containers"))),
        init_containers=tuple(
            (str(_map(c).get("name", "")), json.dumps(c, sort_keys=True))
            for c in _list(spec.get("initContainers"))
        ),
        template=str(_map(meta.get("labels")).get(v.POD_TEMPLATE_HASH_LABEL, "")),
    )


def workload_obs(
    deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] = ()
) -> WorkloadObs:
    import json

    meta = _map(deployment.get("metadata"))
    spec = _map(deployment.get("spec"))
    status = _map(deployment.get("status"))
    replicas = spec.get("replicas", 1)
    replicas = replicas if isinstance(replicas, int) else 1
    pod = _map(_map(spec.get("template")).get("spec"))
    ready = (
        int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        and int(status.get("updatedReplicas") or 0) >= replicas
        and int(status.get("readyReplicas") or 0) >= replicas
        and int(status.get("availableReplicas") or 0) >= replicas
        and int(status.get("replicas") or 0) == replicas
    )
    containers = [_map(c) for c in _list(pod.get("containers"))]
    inits = [_map(c) for c in _list(pod.get("initContainers"))]
    revisions = tuple(
        str(e.get("value"))
        for c in inits
        for e in (_map(x) for x in _list(c.get("env")))
        if e.get("name") == "DEVJOBS_REVISION" and e.get("value")
    )
    return WorkloadObs(
        name=str(meta.get("name", "")),
        ready=ready,
        images=tuple(str(c.get("image", "")) for c in containers),
        revisions=revisions,
        init_containers=tuple(
            (str(c.get("name", "")), json.dumps(c, sort_keys=True)) for c in inits
        ),
        template_labels=tuple(
            sorted(
                (str(k), str(value))
                for k, value in _map(
                    _map(_map(spec.get("template")).get("metadata")).get("labels")
                ).items()
            )
        ),
        init_runs=init_runs(pods, v.INIT_PREFIX),
        github_states=tuple(
            sorted(
                (str(k), str(value))
                for k, value in _map(meta.get("annotations")).items()
                if str(k).startswith(v.GITHUB_STATE_ANNOTATION_PREFIX)
            )
        ),
        check_runs=tuple(
            sorted(
                (str(k), str(value))
                for k, value in _map(meta.get("annotations")).items()
                if str(k).startswith(v.CHECK_RUN_ANNOTATION_PREFIX)
            )
        ),
    )


def observe(
    env_obj: Mapping[str, Any],
    *,
    plan: JobPlan | None,
    plan_error: str | None = None,
    project: Mapping[str, Any] | None = None,
    build_jobs: Sequence[Mapping[str, Any]] = (),
    deployment: Mapping[str, Any] | None = None,
    jobs: Sequence[Mapping[str, Any]] = (),
    pods: Sequence[Mapping[str, Any]] = (),
    workload_pods: Sequence[Mapping[str, Any]] = (),
    configmaps: Sequence[Mapping[str, Any]] = (),
    workload_name: str = catalyst.WORKLOAD_DEPLOYMENT,
    gated_pods: Sequence[Mapping[str, Any]] = (),
) -> Observed:
    """Assemble an `Observed` from API objects (those of other environments are ignored)."""
    env = envmod.from_object(env_obj)
    status = _map(env_obj.get("status"))
    namespace = env.jobs_namespace
    mode = env.mode(catalyst.template_type(project, env.type))
    own = [j for j in jobs if belongs_to(j, env, namespace)]
    return Observed(
        environment=env,
        phase=str(status.get("phase") or ""),
        conditions=tuple(_map(c) for c in _list(status.get("conditions"))),
        plan=plan,
        plan_error=plan_error,
        expected_builds=expected_builds(project, env.type),
        builds=tuple(
            build_obs(j)
            for j in build_jobs
            if _map(j.get("metadata")).get("namespace") == namespace
        ),
        workload=workload_obs(
            deployment,
            [
                p
                for p in workload_pods
                if _map(p.get("metadata")).get("namespace") == namespace
                and _map(_map(p.get("metadata")).get("labels")).get(v.LABEL_WORKLOAD)
                == naming.label_value(env.name)
            ],
        )
        if deployment is not None
        else None,
        jobs=tuple(jobs_with_pods(own, pods)),
        manual=manual_request(env_obj),
        workload_name=workload_name,
        log_tails=log_tails(configmaps, env, namespace),
        openings=read_openings(configmaps, env, namespace),
        runtime=runtime_context(deployment, catalyst.workload(mode).container, env.url),
        mode=mode,
        installation_id=catalyst.installation_id(project),
        gated_pods=tuple(
            gated
            for p in gated_pods
            if _map(p.get("metadata")).get("namespace") == namespace
            and (gated := gated_pod(p)) is not None
        ),
    )
