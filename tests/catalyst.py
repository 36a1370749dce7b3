"""Catalyst objects for the tests and benches: Environments, Projects, build Jobs, the
workload Deployment, devcontainer files, and Catalyst's operator played through the API.

Catalyst (``catalyst.catalyst.dev/v1alpha1``) owns the `Environment` and `Project`
custom resources, builds each commit in a Job (``build-<build>-<sha7>``) and deploys the
workload; the tests play Catalyst. Each builder returns a plain dict the API server
accepts (or, with a ``status``, one as it reports the object back), with the defaults the
tests share (Project ``shop``, type ``development``, branch ``main``, image
``devjobs.test/busybox:1``); anything else is a keyword::

    create_environment(kube, "pr-1", namespace, sources={"web": SHA})
    project_file = write_project(tmp_path / "project.yaml", project({"web": url}))
    write_devcontainer(tmp_path / "web", {"image": image, "tasks": {"test": "echo t"}})
    environment("pr-1", NS, {"web": SHA}, uid="uid-1", status={"phase": "Ready"})
    build_job("web", SHA, NS, state="Complete")  # as the Job controller reports it

`Catalyst` is the operator against a real API server (Project, Environment, phase, commit,
the build Job, the `web` Deployment), `source_repo` a served repository to build, and
`job_config`/`job_plan` the plan devjobs resolves from a Project, for the tests that give
the controller its plan directly.

The real operator (built from `../shared/catalyst`, `tests/test_catalyst_operator.py`)
differs, and the imitation is used only where that does not matter to what a test pins:
its Environments carry no `catalyst.dev/team|project|environment` labels, so everything
stays in the Environment's own namespace (devjobs' fallback; the real operator never
reconciles such an Environment), and it builds in a `manifest` template (the real one
builds in helm mode only). `tests/test_catalyst_imitation.py` runs one scenario under
both and checks devjobs makes the same of them; `tests/test_devjobs_under_catalyst*.py`
test devjobs under the real operator alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from devjobs.kube.client import Kube
from devjobs.resolver.models import JobConfig, JobPlan, SourceInfo, Trigger

if TYPE_CHECKING:
    from tests.gitserver import RepoRoot, WorkRepo

T = TypeVar("T")
GROUP = "catalyst.catalyst.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PROJECT = "shop"
TYPE = "development"
BRANCH = "main"
DEVCONTAINER = ".devcontainer/devcontainer.json"
TEST_IMAGE = "devjobs.test/busybox:1"
"""The test node's image (busybox-static); pods use it with ``imagePullPolicy: IfNotPresent``."""


def environments_path(namespace: str, name: str = "") -> str:
    """The REST path of a namespace's Environments, or of one of them."""
    path = f"/apis/{API_VERSION}/namespaces/{namespace}/environments"
    return f"{path}/{name}" if name else path


def metadata(name: str, namespace: str | None = None, **fields: Any) -> dict[str, Any]:
    """``metadata`` of an object: its name, and its namespace and `fields` unless None."""
    given = {"namespace": namespace, **fields}
    return {"name": name, **{k: v for k, v in given.items() if v is not None}}


def environment_sources(sources: Mapping[str, str], branch: str = BRANCH) -> list[dict[str, Any]]:
    """``spec.sources`` of an Environment: each source's name to its pinned commit."""
    return [{"name": source, "branch": branch, "commitSha": sha} for source, sha in sources.items()]


def environment(
    name: str,
    namespace: str,
    sources: Mapping[str, str] | None = None,
    project: str = PROJECT,
    type_: str = TYPE,
    branch: str = BRANCH,
    *,
    uid: str | None = None,
    generation: int | None = None,
    deployment_mode: str | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An Environment of `project`; `sources` maps each source's name to its pinned
    commit (``spec.sources[].commitSha``, all on `branch`); None: no ``spec.sources``.
    `uid`, `generation` and `status` as the API server reports a stored one."""
    spec: dict[str, Any] = {"projectRef": {"name": project}, "type": type_}
    if deployment_mode is not None:
        spec["deploymentMode"] = deployment_mode
    if sources is not None:
        spec["sources"] = environment_sources(sources, branch)
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Environment",
        "metadata": metadata(name, namespace, uid=uid, generation=generation),
        "spec": spec,
    }
    if status is not None:
        obj["status"] = dict(status)
    return obj


def ready_condition() -> dict[str, Any]:
    """Catalyst's own ``Ready`` condition of a deployed Environment (devjobs leaves it be)."""
    return {
        "type": "Ready",
        "status": "True",
        "reason": "Deployed",
        "message": "",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }


def create_environment(
    kube: Kube, name: str, namespace: str, sources: Mapping[str, str], **fields: Any
) -> dict[str, Any]:
    """POST `environment(name, namespace, sources, **fields)`; returns what the API
    server stored."""
    created: dict[str, Any] = kube.request(
        "POST",
        environments_path(namespace),
        body=environment(name, namespace, sources, **fields),
    )
    return created


def environment_conditions(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """The Environment's ``status.conditions`` by type (empty before any is written)."""
    obj = kube.get(environments_path(namespace, name)) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def project(
    sources: Mapping[str, str],
    name: str = PROJECT,
    namespace: str | None = None,
    jobs: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    branch: str = BRANCH,
    builds: Sequence[str] = (),
) -> dict[str, Any]:
    """A Project; `sources` maps each source's name to its ``repositoryUrl``, `jobs` (by
    source name) gives sources their ``jobs``; `builds` names what Catalyst builds for a
    ``development`` Environment (``spec.templates``), each from the source of its name."""
    entries: list[dict[str, Any]] = []
    for source, url in sources.items():
        entry: dict[str, Any] = {"name": source, "repositoryUrl": url, "branch": branch}
        if jobs and source in jobs:
            entry["jobs"] = [dict(job) for job in jobs[source]]
        entries.append(entry)
    spec: dict[str, Any] = {"sources": entries}
    if builds:
        spec["templates"] = {
            TYPE: {"type": "manifest", "builds": [{"name": b, "sourceRef": b} for b in builds]}
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "Project",
        "metadata": metadata(name, namespace),
        "spec": spec,
    }


def project_job(
    name: str, trigger: str, command: Sequence[str] = ("true",), image: str = TEST_IMAGE,
    **fields: Any,
) -> dict[str, Any]:  # fmt: skip
    """A job of a Project's source (``spec.sources[].jobs[]``); `fields`: ``runAs``, ..."""
    return {"name": name, "trigger": trigger, "command": list(command), "image": image, **fields}


def resources() -> dict[str, Any]:
    """Small requests = limits for the test node's containers."""
    quantities = {"cpu": "50m", "memory": "32Mi"}
    return {"requests": quantities, "limits": dict(quantities)}


def container(name: str, image: str, command: Sequence[str]) -> dict[str, Any]:
    """A container of the test node: its image as present, small resources."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(command),
        "resources": resources(),
    }


def build_job(
    build: str,
    sha: str,
    namespace: str | None = None,
    image: str = TEST_IMAGE,
    state: str = "",
    created: str | None = None,
) -> dict[str, Any]:
    """Catalyst's build Job of `build` at commit `sha`, labelled as Catalyst labels it; it
    succeeds on the test node. `state` ("Complete", "Failed") and `created` (its
    ``creationTimestamp``) as the API server reports an ended one."""
    labels = {"catalyst.dev/job-type": "build", "catalyst.dev/build": build}
    job: dict[str, Any] = {
        "metadata": metadata(
            f"build-{build}-{sha[:7]}", namespace, labels=labels, creationTimestamp=created
        ),
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container("build", image, ["sh", "-c", "echo built"])],
                }
            },
        },
    }
    if state:
        job["status"] = {"conditions": [{"type": state, "status": "True"}]}
    return job


def deployment(
    name: str = "web",
    namespace: str | None = None,
    image: str = TEST_IMAGE,
    inits: Sequence[Mapping[str, Any]] = (),
    ready: bool | None = None,
) -> dict[str, Any]:
    """The workload Catalyst deploys: one replica of `image` sleeping, with `inits` as its
    init containers. `ready` (True or False): as the Deployment controller reports it
    once rolled out (generation 1), its replica ready or not."""
    labels = {"app": name}
    pod: dict[str, Any] = {
        "containers": [container(name, image, ["sleep", "3600"])],
        "terminationGracePeriodSeconds": 0,
    }
    if inits:
        pod["initContainers"] = [dict(c) for c in inits]
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, namespace, generation=None if ready is None else 1),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }
    if ready is not None:
        n = 1 if ready else 0
        obj["status"] = {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": n,
            "availableReplicas": n,
        }
    return obj


def write_project(path: Path, obj: Mapping[str, Any]) -> Path:
    """Write a Project (JSON, which is YAML too) to `path`, for ``devjobs run PROJECT``."""
    path.write_text(json.dumps(obj))
    return path


def write_devcontainer(source: Path, config: Mapping[str, Any]) -> Path:
    """Write `config` as ``SOURCE/.devcontainer/devcontainer.json``; returns that file."""
    path = source / DEVCONTAINER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def source_repo(
    repos: RepoRoot,
    name: str = "app",
    image: str = TEST_IMAGE,
    files: Mapping[str, str] | None = None,
) -> tuple[WorkRepo, str]:
    """A served repository `name` with a devcontainer of `image` and `files`, committed
    once; returns it and that commit."""
    repo = repos.create(name)
    write_devcontainer(repo.path, {"image": image})
    for path, text in (files or {}).items():
        repo.write(path, text)
    return repo, repo.commit("first")


# --- the plan devjobs resolves from a Project ------------------------------------------


def job_config(
    name: str,
    trigger: Trigger,
    source: str = "web",
    script: str | None = None,
    image: str = "busybox:1",
    working_dir: str | None = None,
    **fields: Any,
) -> JobConfig:
    """A resolved job of `source` running `script` (default ``echo NAME``) in `sh -c`;
    `fields`: any other of `JobConfig`'s (a ``command`` replaces the script)."""
    fields.setdefault("command", ["sh", "-c", f"echo {name}" if script is None else script])
    return JobConfig(
        name=name,
        source=source,
        trigger=trigger,
        working_dir=working_dir or f"/workspaces/{source}",
        image=image,
        **fields,
    )


def job_plan(sources: Mapping[str, str], *jobs: JobConfig) -> JobPlan:
    """A resolved plan: `sources` maps each source's name to its repository URL."""
    return JobPlan(
        sources=[SourceInfo(name=n, repository_url=url) for n, url in sources.items()],
        jobs=list(jobs),
    )


# --- Catalyst's operator, played through the API ---------------------------------------


def wait(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 60,
    why: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something true, and return that; fail after
    `timeout` seconds, with `why()` (what to look at) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            more = f"\n{why()}" if why is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{more}")
        time.sleep(0.2)


class Catalyst:
    """What the test does in Catalyst's place, through the real API: Project `shop` of one
    source `app` (built as `app`), Environment `pr-1` of it, in `namespace`."""

    source = "app"
    name = "pr-1"

    def __init__(self, client: Any, namespace: str, image: str = TEST_IMAGE) -> None:
        from kubernetes import client as k

        self.ns = namespace
        self.image = image
        # Any: the generated client's models are not what the tests pass (plain dicts).
        self.custom: Any = k.CustomObjectsApi(client)
        self.batch: Any = k.BatchV1Api(client)
        self.apps: Any = k.AppsV1Api(client)
        self.core: Any = k.CoreV1Api(client)

    # -- writes, as Catalyst makes them

    def create(self, url: str, sha: str, jobs: Sequence[Mapping[str, Any]] | None = None) -> None:
        """The Project (`create_project`), then the Environment at `sha`, Building."""
        self.create_project(url, jobs)
        self.create_environment(sha)

    def create_project(self, url: str, jobs: Sequence[Mapping[str, Any]] | None = None) -> None:
        """The Project, its source at `url` with `jobs` (default: `check` PostBuild,
        `smoke` PostDeploy, `lint` Manual, each `true`)."""
        if jobs is None:
            jobs = [project_job("check", "PostBuild", image=self.image),
                    project_job("smoke", "PostDeploy", image=self.image),
                    project_job("lint", "Manual", image=self.image)]  # fmt: skip
        body = project({self.source: url}, namespace=self.ns, jobs={self.source: jobs},
                       builds=[self.source])  # fmt: skip
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "projects", body)

    def create_environment(self, sha: str) -> None:
        body = environment(self.name, self.ns, {self.source: sha}, deployment_mode=TYPE)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "environments", body)
        self.set_phase("Building")

    def set_phase(self, phase: str) -> None:
        self._update_status(lambda status: status.update(phase=phase))

    def set_condition(self, condition: Mapping[str, Any]) -> None:
        """Catalyst's own condition, set by type among the conditions it read (as
        controller-runtime's SetStatusCondition does): devjobs' stay."""

        def change(status: dict[str, Any]) -> None:
            others = [c for c in status.get("conditions") or [] if c["type"] != condition["type"]]
            status["conditions"] = [*others, dict(condition)]

        self._update_status(change)

    def _update_status(self, change: Callable[[dict[str, Any]], None]) -> None:
        """As Catalyst does: an update of the whole status, resourceVersion checked, read
        again and retried when devjobs wrote its conditions in between (409 Conflict)."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(10):
            env = self.env()
            status = env.get("status") or {}
            change(status)
            env["status"] = status
            try:
                self.custom.replace_namespaced_custom_object_status(
                    GROUP, VERSION, self.ns, "environments", self.name, env
                )
                return
            except ApiException as error:
                if error.status != 409 or attempt == 9:
                    raise

    def set_commit(self, sha: str) -> None:
        self._patch_environment({"spec": {"sources": environment_sources({self.source: sha})}})

    def annotate(self, key: str, value: str) -> None:
        self._patch_environment({"metadata": {"annotations": {key: value}}})

    def _patch_environment(self, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "environments", self.name, patch
        )

    def build(self, sha: str) -> str:
        """Create the build Job of `sha` (it succeeds on the test node); returns its name."""
        body = build_job(self.source, sha, image=self.image)
        self.batch.create_namespaced_job(self.ns, body)
        name: str = body["metadata"]["name"]
        return name

    def built(self, sha: str, timeout: float = 90, why: Callable[[], str] | None = None) -> str:
        """`build` `sha` and wait for its Job to complete; returns its name."""
        name = self.build(sha)
        wait("the build Job to complete", lambda: self.build_done(name), timeout,
             why or (lambda: self.build_diagnostics(name)))  # fmt: skip
        return name

    def build_done(self, name: str) -> bool:
        job = self.batch.read_namespaced_job(name, self.ns)
        return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])

    def deploy_web(self) -> None:
        self.apps.create_namespaced_deployment(self.ns, deployment(image=self.image))

    # -- reads

    def env(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, "environments", self.name
        )
        return obj

    def devjobs_jobs(self) -> dict[str, Any]:
        jobs = self.batch.list_namespaced_job(
            self.ns, label_selector="app.kubernetes.io/managed-by=devjobs"
        )
        return {j.metadata.name: j for j in jobs.items if not j.metadata.deletion_timestamp}

    def jobs_of(self, trigger: str) -> list[Any]:
        return [
            j
            for j in self.devjobs_jobs().values()
            if j.metadata.labels["devjobs.dev/trigger"] == trigger
        ]

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in (self.env().get("status") or {}).get("conditions") or []}

    def wait_conditions(
        self,
        what: str,
        statuses: Mapping[str, str],
        timeout: float = 60,
        why: Callable[[], str] | None = None,
        until: Callable[[dict[str, dict[str, Any]]], bool] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Wait until each condition of `statuses` (type: status) has that status and
        `until` (of all the conditions) holds; returns the conditions by type."""

        def probe() -> dict[str, dict[str, Any]] | None:
            c = self.conditions()
            met = all(c.get(type_, {}).get("status") == s for type_, s in statuses.items())
            return c if c and met and (until is None or until(c)) else None

        return wait(what, probe, timeout, why)

    def wait_condition_at(
        self, what: str, type_: str, sha: str, timeout: float = 30
    ) -> dict[str, Any]:
        """Wait until condition `type_` speaks of commit `sha` (its message starts with
        ``commit <sha7>``); returns it."""
        prefix = f"commit {sha[:7]}"
        return wait(what, lambda: (c := self.conditions().get(type_))
                    and c["message"].startswith(prefix) and c, timeout)  # fmt: skip

    def events(self, reason: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(self.ns).items if e.reason == reason]

    # -- diagnostics, for failure messages

    def build_diagnostics(self, name: str) -> str:
        job = self.batch.read_namespaced_job(name, self.ns)
        events = [(e.reason, e.message) for e in self.core.list_namespaced_event(self.ns).items]
        pods = self.core.list_namespaced_pod(self.ns)
        return f"PODS {pods}\nJOB {job.status}\nEVENTS {events}"

    def job_pods_log(self) -> str:
        """Each pod's phase and container states, the last lines of ended containers'
        logs, and the log tails devjobs kept."""
        out = []
        pod: Any
        for pod in self.core.list_namespaced_pod(self.ns).items:
            statuses = (pod.status.init_container_statuses or []) + (
                pod.status.container_statuses or []
            )
            out.append(f"{pod.metadata.name}: {pod.status.phase} "
                       + "; ".join(f"{s.name}={s.state}" for s in statuses))  # fmt: skip
            for s in statuses:
                if s.state.terminated or (s.last_state and s.last_state.terminated):
                    try:
                        text = self.core.read_namespaced_pod_log(
                            pod.metadata.name, self.ns, container=s.name, tail_lines=20,
                            previous=not s.state.terminated,
                        )  # fmt: skip
                    except Exception as error:  # noqa: BLE001 - diagnostics only
                        text = str(error)
                    out.append(f"  {s.name} log: {text}")
        kept: Any = self.core.list_namespaced_config_map(
            self.ns, label_selector="devjobs.dev/component=log-tail"
        )
        for cm in kept.items:
            out.append(f"kept {cm.metadata.name}: {cm.data}")
        return "\n".join(out)
