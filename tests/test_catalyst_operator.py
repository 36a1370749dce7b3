"""devjobs' model of Catalyst (`devjobs.catalyst`) against the real Catalyst operator.

Tier 2. **The operator is real**: Catalyst's own `manager`, built from its unmodified
source (`tests/cluster/catalyst_build.sh`, ``DEVJOBS_CATALYST_SRC``) and run out of
cluster against the test cluster by the `catalyst_operator` fixture. **The image builder
is a stand-in**: the image named `gcr.io/kaniko-project/executor:v1.20.0` on the node is
a busybox script (`tests/cluster/images.py` `standin_builder_image`) that checks the
Dockerfile the operator's real clone init container fetched, exits 1 when it holds the
line `# devjobs-test: fail-build`, and builds nothing; the image a build "pushes" is
imported into the node under that exact name beforehand. The sources come from a real
`git daemon` on this machine's loopback, which the node's pods and the operator reach
through `NodePortForward`.

Each test owns a team namespace (the `namespace` fixture) holding its Project and
Environment; the operator puts everything else in the target namespace, which these
tests compute only with `devjobs.catalyst`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devjobs import catalyst
from tests.cluster import images
from tests.cluster.catalyst_operator import GIT_CLONE_IMAGE, CatalystOperator
from tests.cluster.nodenet import NodePortForward
from tests.gitserver import GitDaemon, RepoRoot, WorkRepo

PLURAL_ENVIRONMENTS = "environments"
PLURAL_PROJECTS = "projects"
SOURCE = "app"
BUILD = "web"
RESOURCES = {
    "requests": {"cpu": "10m", "memory": "16Mi"},
    "limits": {"cpu": "200m", "memory": "64Mi"},
}
WEB_PORTS = [{"containerPort": images.WEB_PORT, "name": "http"}]
READY_TIMEOUT = 180.0

CHART_YAML = """\
apiVersion: v2
name: devjobs-test-web
version: 0.1.0
"""
CHART_VALUES = """\
readinessPath: /index.html
global:
  images:
    web:
      repository: devjobs.test/unset
      tag: unset
"""
CHART_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: "{{ .Values.global.images.web.repository }}:{{ .Values.global.images.web.tag }}"
          ports:
            - containerPort: 8080
          # The chart gives its app the Environment's secrets as development mode does.
          envFrom:
            - secretRef: {name: catalyst-secrets, optional: true}
          readinessProbe:
            httpGet: {path: {{ .Values.readinessPath | quote }}, port: 8080}
            periodSeconds: 1
          resources:
            requests: {cpu: 10m, memory: 16Mi}
            limits: {cpu: 200m, memory: 64Mi}
"""


# --- the served repository ---------------------------------------------------------------


@dataclass
class AppServer:
    """Repositories under one `git daemon`, at URLs both the node and this machine reach."""

    root: RepoRoot
    forward: NodePortForward
    repos: list[WorkRepo] = field(default_factory=list)

    def repo(self, dockerfile_extra: str = "") -> tuple[WorkRepo, str, str]:
        """A new repository with a Dockerfile, an index.html and a Helm chart under
        `chart/`; returns it, its URL and the commit."""
        name = f"app{len(self.repos) + 1}"
        repo = self.root.create(name)
        self.repos.append(repo)
        repo.write("Dockerfile", f"FROM scratch\nCOPY index.html /www/\n{dockerfile_extra}")
        repo.write("index.html", "served from the clone\n")
        repo.write("chart/Chart.yaml", CHART_YAML)
        repo.write("chart/values.yaml", CHART_VALUES)
        repo.write("chart/templates/deployment.yaml", CHART_DEPLOYMENT)
        sha = repo.commit("app")
        return repo, self.forward.url("git", name), sha


@pytest.fixture(scope="module")
def app_server(kube_node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    root = RepoRoot(tmp_path_factory.mktemp("catalyst-git"))
    daemon = GitDaemon(root.path)
    forward = NodePortForward(kube_node, daemon.port)
    yield AppServer(root, forward)
    forward.stop()
    daemon.stop()


# --- Catalyst objects ---------------------------------------------------------------------


@dataclass
class Placed:
    """One Environment and its Project in the team namespace, and where things land."""

    team: str
    project: str
    name: str
    mode: str
    commit: str
    phases: list[str] = field(default_factory=list)
    project_label: str = ""
    environment_label: str = ""

    @property
    def target(self) -> str:
        """Computed by devjobs from the labels (the object names when not given)."""
        return catalyst.target_namespace(
            self.team, self.project_label or self.project, self.environment_label or self.name
        )


class Cluster:
    def __init__(self, api_client: Any) -> None:
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.core: Any = client.CoreV1Api(api_client)
        self.apps: Any = client.AppsV1Api(api_client)
        self.batch: Any = client.BatchV1Api(api_client)
        self.placed: list[Placed] = []
        self.after_environments: list[Callable[[], None]] = []

    def create_project(
        self, team: str, name: str, url: str, templates: dict[str, Any]
    ) -> dict[str, Any]:
        body = {
            "apiVersion": catalyst.API_VERSION,
            "kind": "Project",
            "metadata": {"name": name, "namespace": team},
            "spec": {
                "githubInstallationId": "devjobs-test",
                "sources": [{"name": SOURCE, "repositoryUrl": url, "branch": "main"}],
                "templates": templates,
            },
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            catalyst.GROUP, catalyst.VERSION, team, PLURAL_PROJECTS, body
        )
        return created

    def create_environment(
        self,
        team: str,
        project: str,
        name: str,
        env_type: str,
        commit: str,
        mode: str,
        config: dict[str, Any] | None = None,
        project_label: str = "",
        environment_label: str = "",
    ) -> Placed:
        labels = {
            catalyst.LABEL_TEAM: team,
            catalyst.LABEL_PROJECT: project_label or project,
            catalyst.LABEL_ENVIRONMENT: environment_label or name,
        }
        spec: dict[str, Any] = {
            "projectRef": {"name": project},
            "type": env_type,
            "sources": [{"name": SOURCE, "commitSha": commit, "branch": "main"}],
        }
        if config:
            spec["config"] = config
        body = {
            "apiVersion": catalyst.API_VERSION,
            "kind": "Environment",
            "metadata": {"name": name, "namespace": team, "labels": labels},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(
            catalyst.GROUP, catalyst.VERSION, team, PLURAL_ENVIRONMENTS, body
        )
        placed = Placed(
            team,
            project,
            name,
            mode,
            commit,
            project_label=project_label,
            environment_label=environment_label,
        )
        self.placed.append(placed)
        return placed

    def environment(self, placed: Placed) -> dict[str, Any] | None:
        try:
            env: dict[str, Any] = self.custom.get_namespaced_custom_object(
                catalyst.GROUP, catalyst.VERSION, placed.team, PLURAL_ENVIRONMENTS, placed.name
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return env

    def phase(self, placed: Placed) -> str:
        env = self.environment(placed) or {}
        phase = str((env.get("status") or {}).get("phase") or "")
        if not placed.phases or placed.phases[-1] != phase:
            placed.phases.append(phase)
        return phase

    def wait_phase(self, placed: Placed, want: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.phase(placed) != want:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Environment {placed.team}/{placed.name} ({placed.mode}) not {want} after "
                    f"{timeout:.0f}s; phases seen: {placed.phases}; "
                    f"pods in {placed.target}: {self.pod_summary(placed.target)}"
                )
            time.sleep(0.25)

    def pod_summary(self, namespace: str) -> list[str]:
        try:
            pods = self.core.list_namespaced_pod(namespace).items
        except ApiException:
            return []
        out = []
        for p in pods:
            states = [
                f"{s.name}:{next(k for k, v in s.state.to_dict().items() if v)}"
                for s in (p.status.init_container_statuses or [])
                + (p.status.container_statuses or [])
            ]
            out.append(f"{p.metadata.name} {p.status.phase} {states}")
        return out

    def deployment(self, namespace: str, name: str) -> Any:
        return self.apps.read_namespaced_deployment(name, namespace)

    def namespace_exists(self, name: str) -> bool:
        try:
            self.core.read_namespace(name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture
def cluster(
    kube_client: Any, catalyst_operator: CatalystOperator, namespace: str
) -> Iterator[Cluster]:
    """The API, for one test's team namespace. Its Environments are deleted (and their
    target namespaces with them) before the team namespace: deleting the namespace
    deletes the Project too, and without its Project the operator never gets to its
    finalizer (see test_without_its_project_a_deleted_environment_keeps_its_finalizer)."""
    c = Cluster(kube_client)
    yield c
    for placed in c.placed:
        with contextlib.suppress(ApiException):
            c.custom.delete_namespaced_custom_object(
                catalyst.GROUP, catalyst.VERSION, placed.team, PLURAL_ENVIRONMENTS, placed.name
            )
    for placed in c.placed:
        wait_until(
            f"Environment {placed.name} to be gone",
            lambda p=placed: c.environment(p) is None,  # type: ignore[misc]
            120,
        )
    for cleanup in c.after_environments:
        cleanup()


def production_templates(
    image: str = images.WEB_IMAGE, env: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A production-mode template; `env` is the app's `config.env` (Kubernetes EnvVars)."""
    config: dict[str, Any] = {
        "image": image,
        "ports": WEB_PORTS,
        "resources": RESOURCES,
        "readinessProbe": {
            "httpGet": {"path": "/index.html", "port": images.WEB_PORT},
            "periodSeconds": 1,
        },
    }
    if env:
        config["env"] = env
    return {"deployment": {"type": "manifest", "config": config}}


def helm_templates(values: dict[str, Any] | None = None, build: str = BUILD) -> dict[str, Any]:
    template: dict[str, Any] = {
        "type": "helm",
        "sourceRef": SOURCE,
        "path": "chart",
        "builds": [{"name": build, "sourceRef": SOURCE}],
    }
    if values:
        template["values"] = values
    return {"deployment": template}


def place_production(
    cluster: Cluster,
    app_server: AppServer,
    team: str,
    project: str = "shop",
    name: str = "pr-1",
    env: list[dict[str, Any]] | None = None,
) -> Placed:
    _repo, url, sha = app_server.repo()
    cluster.create_project(team, project, url, production_templates(env=env))
    return cluster.create_environment(
        team, project, name, "deployment", sha, catalyst.MODE_PRODUCTION
    )


def place_helm(
    cluster: Cluster,
    app_server: AppServer,
    operator: CatalystOperator,
    team: str,
    dockerfile_extra: str = "",
    values: dict[str, Any] | None = None,
    build: str = BUILD,
) -> Placed:
    _repo, url, sha = app_server.repo(dockerfile_extra)
    project, name = "shop", "pr-3"
    if build == build.lower():  # else no valid image reference: the chart's pod won't run
        operator.import_web_image(catalyst.build_image(project, build, name, sha))
    cluster.create_project(team, project, url, helm_templates(values, build))
    return cluster.create_environment(team, project, name, "deployment", sha, catalyst.MODE_HELM)


def set_commit(cluster: Cluster, placed: Placed, commit: str) -> None:
    """A new commit for the Environment's source (a JSON merge patch replaces the list)."""
    cluster.custom.patch_namespaced_custom_object(
        catalyst.GROUP,
        catalyst.VERSION,
        placed.team,
        PLURAL_ENVIRONMENTS,
        placed.name,
        {"spec": {"sources": [{"name": SOURCE, "commitSha": commit, "branch": "main"}]}},
    )


def main_container(deployment: Any, name: str) -> Any:
    containers = {c.name: c for c in deployment.spec.template.spec.containers}
    assert name in containers, f"no container {name!r} in {sorted(containers)}"
    return containers[name]


# --- production ---------------------------------------------------------------------------


@pytest.mark.tier2
def test_production_environment_is_ready_with_deployment_web_in_the_hashed_target_namespace(
    cluster: Cluster, app_server: AppServer, namespace: str
) -> None:
    project = "a-project-whose-name-is-rather-long"
    name = "preview-environment-for-pull-request-4711"
    full = f"{namespace}-{project}-{name}"
    assert len(full) > catalyst.MAX_NAMESPACE  # the operator must hash-truncate this one
    placed = place_production(cluster, app_server, namespace, project, name)

    cluster.wait_phase(placed, catalyst.PHASE_READY)

    assert len(placed.target) == catalyst.MAX_NAMESPACE and placed.target != full
    assert cluster.namespace_exists(placed.target)
    work = catalyst.workload(catalyst.MODE_PRODUCTION)
    deployment = cluster.deployment(placed.target, work.deployment)
    assert (deployment.status.ready_replicas or 0) > 0
    assert main_container(deployment, work.container).image == images.WEB_IMAGE
    assert deployment.spec.template.metadata.labels == dict([catalyst.WORKLOAD_POD_LABEL])
    cluster.core.read_namespaced_service(work.deployment, placed.target)
    quota = cluster.core.read_namespaced_resource_quota("default-quota", placed.target)
    assert quota.spec.hard["requests.memory"] == "4Gi"
    env = cluster.environment(placed) or {}
    assert catalyst.FINALIZER in env["metadata"]["finalizers"]
    assert env["status"]["url"] == f"https://{name}.preview.devjobs.test/"
    assert "conditions" not in env["status"]
    # Nothing of the Environment's lands in the team namespace, where it lives.
    assert cluster.apps.list_namespaced_deployment(namespace).items == []
    assert placed.phases[-1] == catalyst.PHASE_READY
    assert set(placed.phases) <= {"", catalyst.PHASE_PROVISIONING, catalyst.PHASE_READY}


@pytest.mark.tier2
def test_production_image_change_replaces_the_whole_deployment_spec(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    placed = place_production(cluster, app_server, namespace, "shop", "pr-2")
    cluster.wait_phase(placed, catalyst.PHASE_READY)
    work = catalyst.workload(catalyst.MODE_PRODUCTION)
    # Another controller (devjobs) adds an init container to the workload's pods.
    gate = {
        "name": "devjobs-added",
        "image": images.TEST_IMAGE,
        "command": ["true"],
        "resources": RESOURCES,
    }
    cluster.apps.patch_namespaced_deployment(
        work.deployment,
        placed.target,
        {"spec": {"template": {"spec": {"initContainers": [gate]}}}},
    )
    before = cluster.deployment(placed.target, work.deployment)
    assert [c.name for c in before.spec.template.spec.init_containers] == ["devjobs-added"]
    new_image = catalyst_operator.import_web_image("devjobs.test/web:2")

    cluster.custom.patch_namespaced_custom_object(
        catalyst.GROUP,
        catalyst.VERSION,
        placed.team,
        PLURAL_ENVIRONMENTS,
        placed.name,
        {"spec": {"config": {"image": new_image}}},
    )

    def replaced() -> bool:
        d = cluster.deployment(placed.target, work.deployment)
        return bool(main_container(d, work.container).image == new_image)

    placed.phases.clear()
    wait_until("the operator to update the Deployment's image", replaced)
    after = cluster.deployment(placed.target, work.deployment)
    assert not after.spec.template.spec.init_containers  # dropped with the whole spec
    assert after.spec.strategy.type == "RollingUpdate"
    # The new pods roll out by the Deployment's default strategy: one new pod is added
    # (maxSurge 25% -> 1), and the old one goes once the new one is Ready (maxUnavailable
    # 25% -> 0): the phase never leaves Ready.
    assert after.spec.strategy.rolling_update.max_surge == "25%"
    assert after.spec.strategy.rolling_update.max_unavailable == "25%"

    def rolled_out() -> bool:
        cluster.phase(placed)
        pods = cluster.core.list_namespaced_pod(placed.target, label_selector="app=web").items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        return bool(live) and all(
            p.spec.containers[0].image == new_image and p.status.phase == "Running" for p in live
        )

    wait_until("the new image's pods to replace the old ones", rolled_out, READY_TIMEOUT)
    assert set(placed.phases) == {catalyst.PHASE_READY}, placed.phases


# --- development --------------------------------------------------------------------------


def place_development(
    cluster: Cluster, app_server: AppServer, node: Any, team: str, name: str = "dev-1"
) -> Placed:
    """A development-mode Environment whose app serves the clone (Ready only once the
    git-clone init container checked the commit out into the code volume)."""
    _repo, url, sha = app_server.repo()
    project = "shop"
    target = catalyst.target_namespace(team, project, name)
    # The code volume is a PVC and the test cluster has no provisioner: a PersistentVolume
    # on the node's tmpfs, bound in advance to the claim the operator will create.
    pv_name = f"{target[:50]}-code"
    cluster.core.create_persistent_volume(
        {
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"{node.state}/pv/{pv_name}", "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": target, "name": "code"},
            },
        }
    )
    cluster.after_environments.append(lambda: cluster.core.delete_persistent_volume(pv_name))
    templates = {
        "development": {
            "type": "manifest",
            "config": {
                "image": images.WEB_IMAGE,
                "command": ["sh", "-c", images.web_command("/code")],
                "ports": WEB_PORTS,
                "resources": RESOURCES,
                "readinessProbe": {
                    "httpGet": {"path": "/index.html", "port": images.WEB_PORT},
                    "periodSeconds": 1,
                },
                "volumeMounts": [{"name": "code", "mountPath": "/code"}],
                "volumes": [
                    {
                        "name": "code",
                        "persistentVolumeClaim": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": "",
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        }
    }
    cluster.create_project(team, project, url, templates)
    return cluster.create_environment(
        team, project, name, "development", sha, catalyst.MODE_DEVELOPMENT
    )


@pytest.mark.tier2
def test_development_environment_is_ready_with_main_container_app_reading_catalyst_secrets(
    cluster: Cluster, app_server: AppServer, kube_node: Any, namespace: str
) -> None:
    placed = place_development(cluster, app_server, kube_node, namespace)

    cluster.wait_phase(placed, catalyst.PHASE_READY)

    work = catalyst.workload(catalyst.MODE_DEVELOPMENT)
    deployment = cluster.deployment(placed.target, work.deployment)
    assert (deployment.status.ready_replicas or 0) > 0
    app = main_container(deployment, work.container)
    assert [c.name for c in deployment.spec.template.spec.containers] == [work.container]
    assert [e.secret_ref.name for e in app.env_from] == [catalyst.SECRETS]
    assert app.env_from[0].secret_ref.optional is True
    init = deployment.spec.template.spec.init_containers
    assert [c.name for c in init] == ["git-clone"]
    assert init[0].image == GIT_CLONE_IMAGE
    clone_env = {e.name: e.value for e in init[0].env}
    assert clone_env["GIT_COMMIT"] == placed.commit
    cluster.core.read_namespaced_config_map(catalyst.GIT_SCRIPTS_CONFIGMAP, placed.target)
    cluster.core.read_namespaced_persistent_volume_claim("code", placed.target)
    assert set(placed.phases) <= {"", catalyst.PHASE_PROVISIONING, catalyst.PHASE_READY}


@pytest.mark.tier2
def test_development_new_commit_leaves_the_deployment_as_it_was_created(
    cluster: Cluster, app_server: AppServer, kube_node: Any, namespace: str
) -> None:
    placed = place_development(cluster, app_server, kube_node, namespace, "dev-2")
    cluster.wait_phase(placed, catalyst.PHASE_READY)
    work = catalyst.workload(catalyst.MODE_DEVELOPMENT)
    before = cluster.deployment(placed.target, work.deployment)

    new_commit = "0123456789abcdef0123456789abcdef01234567"
    set_commit(cluster, placed, new_commit)

    time.sleep(5)  # several reconciles
    after = cluster.deployment(placed.target, work.deployment)
    assert after.metadata.generation == before.metadata.generation
    clone_env = {e.name: e.value for e in after.spec.template.spec.init_containers[0].env}
    assert clone_env["GIT_COMMIT"] == placed.commit != new_commit
    assert cluster.phase(placed) == catalyst.PHASE_READY


# --- helm ---------------------------------------------------------------------------------


@pytest.mark.tier2
def test_helm_environment_builds_in_the_build_job_then_deploys_the_built_image(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    placed = place_helm(cluster, app_server, catalyst_operator, namespace)

    cluster.wait_phase(placed, catalyst.PHASE_READY)

    assert catalyst.PHASE_BUILDING in placed.phases, placed.phases
    job = cluster.batch.read_namespaced_job(
        catalyst.build_job_name(BUILD, placed.commit), placed.target
    )
    labels = job.metadata.labels
    assert labels[catalyst.BUILD_TYPE_LABEL] == catalyst.BUILD_TYPE
    assert labels[catalyst.BUILD_NAME_LABEL] == BUILD
    assert (job.status.succeeded or 0) == 1
    pod = job.spec.template.spec
    assert [(c.name, c.image) for c in pod.init_containers] == [("git-clone", GIT_CLONE_IMAGE)]
    assert [(c.name, c.image) for c in pod.containers] == [("kaniko", images.STANDIN_BUILDER_IMAGE)]
    built = catalyst.build_image(placed.project, BUILD, placed.name, placed.commit)
    assert f"--destination={built}" in pod.containers[0].args
    work = catalyst.workload(catalyst.MODE_HELM)
    deployment = cluster.deployment(placed.target, work.deployment)
    assert main_container(deployment, work.container).image == built

    # Every reconcile that reaches the deploy step installs or upgrades the release, and
    # how many do around the phase saying Ready is not fixed (CI saw a second revision
    # deployed, and one still pending-upgrade): once they stop, the newest revision is
    # deployed and each earlier one superseded.
    wait_until(
        "the release's upgrades to settle",
        lambda: bool(release_revisions(cluster, placed)) and release_settled(cluster, placed),
        READY_TIMEOUT,
    )
    wait_until(
        "the chart's pods to be Ready",
        lambda: (cluster.deployment(placed.target, work.deployment).status.ready_replicas or 0) > 0,
        READY_TIMEOUT,
    )


@pytest.mark.tier2
def test_helm_environment_is_ready_before_its_pods_are(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    placed = place_helm(
        cluster, app_server, catalyst_operator, namespace, values={"readinessPath": "/never"}
    )

    cluster.wait_phase(placed, catalyst.PHASE_READY)

    work = catalyst.workload(catalyst.MODE_HELM)
    time.sleep(5)  # the pod runs, its readiness probe keeps failing
    deployment = cluster.deployment(placed.target, work.deployment)
    assert (deployment.status.ready_replicas or 0) == 0
    assert cluster.phase(placed) == catalyst.PHASE_READY


@pytest.mark.tier2
def test_helm_build_the_builder_fails_leaves_the_environment_failed_without_a_release(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    placed = place_helm(
        cluster, app_server, catalyst_operator, namespace, f"{images.FAIL_BUILD_MARK}\n"
    )

    cluster.wait_phase(placed, catalyst.PHASE_FAILED)

    assert placed.phases[-2:] == [catalyst.PHASE_BUILDING, catalyst.PHASE_FAILED], placed.phases
    job = cluster.batch.read_namespaced_job(
        catalyst.build_job_name(BUILD, placed.commit), placed.target
    )
    assert (job.status.failed or 0) == 1 and not job.status.succeeded
    time.sleep(3)  # the operator retries; the phase stays Failed, nothing is deployed
    assert cluster.phase(placed) == catalyst.PHASE_FAILED
    work = catalyst.workload(catalyst.MODE_HELM)
    with pytest.raises(ApiException) as missing:
        cluster.deployment(placed.target, work.deployment)
    assert missing.value.status == 404


# --- the modes devjobs does not follow ---------------------------------------------------


@pytest.mark.tier2
def test_compose_environment_deploys_a_service_its_own_quota_refuses_and_never_gets_ready(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    """What `catalyst.unsupported_mode` says of docker-compose mode."""
    repo, url, _ = app_server.repo()
    repo.write("docker-compose.yml", f"services:\n  web:\n    image: {images.WEB_IMAGE}\n")
    sha = repo.commit("compose")
    templates = {"deployment": {"type": "docker-compose", "sourceRef": SOURCE, "path": "."}}
    cluster.create_project(namespace, "shop", url, templates)
    placed = cluster.create_environment(
        namespace, "shop", "pr-5", "deployment", sha, catalyst.MODE_COMPOSE
    )
    assert catalyst.deployment_mode(None, "deployment", "docker-compose") == placed.mode

    def refused() -> bool:
        events = cluster.core.list_namespaced_event(placed.target).items
        return any(e.reason == "FailedCreate" and "must specify" in e.message for e in events)

    wait_until("the quota to refuse the compose service's pods", refused, READY_TIMEOUT)
    deployment = cluster.deployment(placed.target, catalyst.WORKLOAD_DEPLOYMENT)
    (container,) = deployment.spec.template.spec.containers
    assert not (container.resources.requests or container.resources.limits)
    assert deployment.spec.template.metadata.labels == dict([catalyst.WORKLOAD_POD_LABEL])
    assert cluster.core.list_namespaced_pod(placed.target).items == []
    assert cluster.phase(placed) != catalyst.PHASE_READY
    # Another controller's change to the Deployment (an init container, say) is undone.
    marked = {"spec": {"template": {"metadata": {"annotations": {"devjobs-test/mark": "1"}}}}}
    cluster.apps.patch_namespaced_deployment(catalyst.WORKLOAD_DEPLOYMENT, placed.target, marked)

    def unmarked() -> bool:
        template = cluster.deployment(placed.target, catalyst.WORKLOAD_DEPLOYMENT).spec.template
        return "devjobs-test/mark" not in (template.metadata.annotations or {})

    wait_until("the operator to replace the Deployment again", unmarked, 60)
    assert "docker-compose mode" in (catalyst.unsupported_mode(placed.mode) or "")


@pytest.mark.tier2
def test_workspace_environment_runs_one_workspace_pod_and_no_app(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    """What `catalyst.unsupported_mode` says of workspace mode (any other `spec.type`)."""
    _repo, url, sha = app_server.repo()
    cluster.create_project(namespace, "shop", url, {})
    placed = cluster.create_environment(
        namespace, "shop", "pr-6", "preview", sha, catalyst.MODE_WORKSPACE
    )
    assert catalyst.deployment_mode(None, "preview", None) == placed.mode

    def workspace_pods() -> list[Any]:
        pods = cluster.core.list_namespaced_pod(
            placed.target, label_selector="catalyst.dev/pod-type=workspace"
        ).items
        return list(pods)

    wait_until("the workspace pod", lambda: bool(workspace_pods()), READY_TIMEOUT)
    assert len(workspace_pods()) == 1
    assert cluster.apps.list_namespaced_deployment(placed.target).items == []
    assert "workspace mode" in (catalyst.unsupported_mode(placed.mode) or "")


# --- deletion -----------------------------------------------------------------------------


@pytest.mark.tier2
def test_deleting_the_environment_deletes_its_target_namespace(
    cluster: Cluster, app_server: AppServer, namespace: str
) -> None:
    placed = place_production(cluster, app_server, namespace, "shop", "pr-9")
    cluster.wait_phase(placed, catalyst.PHASE_READY)
    assert cluster.namespace_exists(placed.target)

    cluster.custom.delete_namespaced_custom_object(
        catalyst.GROUP, catalyst.VERSION, placed.team, PLURAL_ENVIRONMENTS, placed.name
    )

    wait_until("the Environment to be gone", lambda: cluster.environment(placed) is None)
    wait_until(
        f"namespace {placed.target} to be deleted",
        lambda: not cluster.namespace_exists(placed.target),
        READY_TIMEOUT,
    )


@pytest.mark.tier2
def test_without_its_project_a_deleted_environment_keeps_its_finalizer_and_namespace(
    cluster: Cluster, app_server: AppServer, namespace: str
) -> None:
    """The operator reads the Project before it looks at the deletion: an Environment
    deleted after its Project (as when the team namespace is deleted) is never finalised,
    so its target namespace stays, until the Project is back."""
    placed = place_production(cluster, app_server, namespace, "shop", "pr-8")
    cluster.wait_phase(placed, catalyst.PHASE_READY)
    project = cluster.custom.get_namespaced_custom_object(
        catalyst.GROUP, catalyst.VERSION, placed.team, PLURAL_PROJECTS, placed.project
    )
    cluster.custom.delete_namespaced_custom_object(
        catalyst.GROUP, catalyst.VERSION, placed.team, PLURAL_PROJECTS, placed.project
    )

    cluster.custom.delete_namespaced_custom_object(
        catalyst.GROUP, catalyst.VERSION, placed.team, PLURAL_ENVIRONMENTS, placed.name
    )

    time.sleep(5)
    env = cluster.environment(placed)
    assert env is not None and env["metadata"].get("deletionTimestamp")
    assert env["metadata"]["finalizers"] == [catalyst.FINALIZER]
    assert cluster.namespace_exists(placed.target)
    # The Project back: the next retry finalises the Environment.
    cluster.create_project(
        placed.team,
        placed.project,
        project["spec"]["sources"][0]["repositoryUrl"],
        project["spec"]["templates"],
    )
    wait_until("the Environment to be gone", lambda: cluster.environment(placed) is None, 120)
    wait_until(
        f"namespace {placed.target} to be deleted",
        lambda: not cluster.namespace_exists(placed.target),
        READY_TIMEOUT,
    )


@pytest.mark.tier2
def test_target_namespace_is_computed_from_the_label_values_sanitised(
    cluster: Cluster, app_server: AppServer, namespace: str
) -> None:
    """The target namespace comes from the labels, not from the object names; the
    Project is the one `spec.projectRef` names, in the namespace the team label names."""
    _repo, url, sha = app_server.repo()
    cluster.create_project(namespace, "shop", url, production_templates())
    placed = cluster.create_environment(
        namespace,
        "shop",
        "pr-5",
        "deployment",
        sha,
        catalyst.MODE_PRODUCTION,
        project_label="Shop_Front.End",
        environment_label="PR_5.Preview",
    )

    cluster.wait_phase(placed, catalyst.PHASE_READY)

    # devjobs' computed namespace (sanitised: lower case, `_` and `.` to `-`) is the real one.
    assert placed.target.startswith(f"{namespace}-shop-fron")
    work = catalyst.workload(catalyst.MODE_PRODUCTION)
    cluster.deployment(placed.target, work.deployment)
    labels = cluster.core.read_namespace(placed.target).metadata.labels
    assert {k: v for k, v in labels.items() if k.startswith("catalyst.dev/")} == {
        catalyst.LABEL_TEAM: namespace,
        catalyst.LABEL_PROJECT: "Shop_Front.End",
        catalyst.LABEL_ENVIRONMENT: "pr-5",  # the Environment's name, not its label
        "catalyst.dev/branch": "main",
        "catalyst.dev/namespace-type": "environment",
    }


@pytest.mark.tier2
def test_production_new_commit_alone_leaves_the_deployment_unchanged(
    cluster: Cluster, app_server: AppServer, namespace: str
) -> None:
    """Production mode deploys `config.image`; the commit plays no part in it."""
    placed = place_production(cluster, app_server, namespace, "shop", "pr-6")
    cluster.wait_phase(placed, catalyst.PHASE_READY)
    work = catalyst.workload(catalyst.MODE_PRODUCTION)
    before = cluster.deployment(placed.target, work.deployment)

    set_commit(cluster, placed, "0123456789abcdef0123456789abcdef01234567")

    time.sleep(5)
    after = cluster.deployment(placed.target, work.deployment)
    assert after.metadata.generation == before.metadata.generation
    assert after.metadata.resource_version == before.metadata.resource_version
    assert cluster.phase(placed) == catalyst.PHASE_READY


def release_revisions(cluster: Cluster, placed: Placed) -> dict[int, str]:
    """The Helm release's revisions (storage driver `secret`) and their status."""
    secrets = cluster.core.list_namespaced_secret(
        placed.target, label_selector=f"owner=helm,name={placed.name}"
    ).items
    return {int(s.metadata.labels["version"]): s.metadata.labels["status"] for s in secrets}


def release_settled(cluster: Cluster, placed: Placed) -> bool:
    """No upgrade of the release is under way: its newest revision is deployed and each
    earlier one superseded (true of no release at all, as in the other modes)."""
    revisions = release_revisions(cluster, placed)
    statuses = [revisions[r] for r in sorted(revisions)]
    return statuses == ["superseded"] * (len(statuses) - 1) + ["deployed"][: len(statuses)]


@pytest.mark.tier2
def test_helm_new_commit_builds_again_while_the_phase_stays_ready_then_upgrades(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    placed = place_helm(cluster, app_server, catalyst_operator, namespace)
    cluster.wait_phase(placed, catalyst.PHASE_READY)
    work = catalyst.workload(catalyst.MODE_HELM)
    source = app_server.repos[-1]
    source.write("index.html", "second commit\n")
    second = source.commit("second")
    built = catalyst.build_image(placed.project, BUILD, placed.name, second)
    catalyst_operator.import_web_image(built)
    placed.phases.clear()

    set_commit(cluster, placed, second)

    def deployed() -> bool:
        cluster.phase(placed)
        d = cluster.deployment(placed.target, work.deployment)
        return bool(main_container(d, work.container).image == built)

    wait_until("the release to be upgraded to the new build", deployed, READY_TIMEOUT)
    job = cluster.batch.read_namespaced_job(catalyst.build_job_name(BUILD, second), placed.target)
    assert (job.status.succeeded or 0) == 1
    # The first commit's build Job stays.
    cluster.batch.read_namespaced_job(catalyst.build_job_name(BUILD, placed.commit), placed.target)
    assert set(placed.phases) == {catalyst.PHASE_READY}, placed.phases
    assert max(release_revisions(cluster, placed)) >= 2


@pytest.mark.tier2
def test_helm_every_write_to_the_environment_upgrades_the_release_again(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    """The operator reconciles on every change of the Environment, status included, and
    in helm mode each reconcile clones the chart's source and runs `helm upgrade`: a
    condition written by another controller (devjobs) makes a new release revision."""
    placed = place_helm(cluster, app_server, catalyst_operator, namespace)
    cluster.wait_phase(placed, catalyst.PHASE_READY)
    time.sleep(3)
    before = max(release_revisions(cluster, placed))

    condition = {
        "type": "devjobs.dev/Probe",
        "status": "True",
        "reason": "Written",
        "message": "a condition as devjobs writes one",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    cluster.custom.patch_namespaced_custom_object_status(
        catalyst.GROUP,
        catalyst.VERSION,
        placed.team,
        PLURAL_ENVIRONMENTS,
        placed.name,
        {"status": {"conditions": [condition]}},
    )

    wait_until(
        "a new release revision",
        lambda: max(release_revisions(cluster, placed)) > before,
        60,
    )
    env = cluster.environment(placed) or {}
    assert [c["type"] for c in env["status"]["conditions"]] == ["devjobs.dev/Probe"]
    assert env["status"]["phase"] == catalyst.PHASE_READY


@pytest.mark.tier2
def test_build_job_name_of_a_build_with_capitals_and_dots_is_as_devjobs_computes(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    build = "Web.Api"
    placed = place_helm(cluster, app_server, catalyst_operator, namespace, build=build)

    def job_names() -> list[str]:
        jobs = cluster.batch.list_namespaced_job(
            placed.target, label_selector=f"{catalyst.BUILD_NAME_LABEL}={build}"
        ).items
        return [j.metadata.name for j in jobs]

    wait_until("the build Job", lambda: bool(job_names()))
    assert job_names() == [f"build-web-api-{placed.commit[:7]}"]  # the operator's rule
    assert job_names() == [catalyst.build_job_name(build, placed.commit)]


@pytest.mark.tier2
def test_helm_after_a_failed_build_a_good_commit_goes_from_failed_straight_to_ready(
    cluster: Cluster, app_server: AppServer, catalyst_operator: CatalystOperator, namespace: str
) -> None:
    """`Failed` is kept while the next commit builds (the operator sets `Building` only
    from a phase that is neither Ready nor Failed), then becomes `Ready`."""
    placed = place_helm(
        cluster, app_server, catalyst_operator, namespace, f"{images.FAIL_BUILD_MARK}\n"
    )
    cluster.wait_phase(placed, catalyst.PHASE_FAILED)
    source = app_server.repos[-1]
    source.write("Dockerfile", "FROM scratch\nCOPY index.html /www/\n")
    good = source.commit("builds")
    catalyst_operator.import_web_image(
        catalyst.build_image(placed.project, BUILD, placed.name, good)
    )
    placed.phases.clear()

    set_commit(cluster, placed, good)

    cluster.wait_phase(placed, catalyst.PHASE_READY)
    assert placed.phases == [catalyst.PHASE_FAILED, catalyst.PHASE_READY], placed.phases
    job = cluster.batch.read_namespaced_job(catalyst.build_job_name(BUILD, good), placed.target)
    assert (job.status.succeeded or 0) == 1
