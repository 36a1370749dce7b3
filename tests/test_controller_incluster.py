"""The controller as a pod on the real node, installed with `deploy/`, end to end.

What is real: the controller image (built from the Dockerfile by a private dockerd,
`tests/controller_image/build.py`, cached by source digest), imported into the tier-2
node's containerd; `kubectl apply -k` of an overlay of `deploy/` that only swaps the image
and points the pod at the API server; the pod's own ServiceAccount token and RBAC; `git
daemon` inside the node's network namespace, so the controller (resolving the plan) and
the jobs' pods (cloning with the controller image as `--git-image`, as its non-root
user 65532) reach it; and the jobs' pods, which clone and run and succeed or fail for
real. The test plays Catalyst: Project, Environment, phase, the build Job and the `web`
Deployment.

How the pod reaches the API server: the API server listens on 127.0.0.1 only; the node's
kubelet reaches it through the forwarder on the host side of the node's veth
(`node.forwarder`, certificate name `localhost`). The pod runs with `hostNetwork` in the
node's network namespace and gets a kubeconfig (ConfigMap) naming that address, the
service-account CA and token files, and `tls-server-name: localhost`.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devjobs import catalyst
from devjobs.kube.client import Kube
from devjobs.kube.logstore import read_log_tail
from tests.catalyst import Catalyst, container, project_job, source_repo, wait
from tests.cluster import crds
from tests.cluster.catalyst_operator import CatalystOperator
from tests.cluster.node import POD_CIDR, Node
from tests.controller_image import build
from tests.gitserver import RepoRoot, _server_env
from tests.test_catalyst_operator import (  # noqa: F401 (fixtures)
    READY_TIMEOUT,
    SOURCE,
    AppServer,
    Cluster,
    app_server,
    production_templates,
    set_commit,
)
from tests.test_controller_deploy import REPO, kubectl
from tests.test_devjobs_under_catalyst import conditions

pytestmark = pytest.mark.tier2

CONTROLLER_NS = "devjobs-system"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_node_netns(node: Node, *argv: str) -> list[str]:
    assert node.holder is not None
    return ["nsenter", "-t", str(node.holder.pid), "-n", "--", *argv]


# --- the image on the node -----------------------------------------------------------


@pytest.fixture(scope="session")
def controller_image(kube_node: Any) -> str:
    """The controller image, built (or taken from the cache) and imported into the
    node's containerd once per session."""
    if not isinstance(kube_node, Node):
        pytest.fail("the in-cluster test imports its image into the test node's containerd; "
                    "it cannot run against DEVJOBS_TEST_KUBECONFIG")  # fmt: skip
    tar = build.cached_build()
    holder: Any = kube_node.holder
    ctr = ["nsenter", "-t", str(holder.pid), "-m", "-n", "--", "ctr", "--address",
           f"{kube_node.state}/containerd.sock", "--namespace", "k8s.io"]  # fmt: skip
    listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True)
    have = listed.stdout.split()
    if build.IMAGE not in have or _stale(ctr, tar):
        subprocess.run([*ctr, "images", "import", str(tar)], check=True, capture_output=True)
    return build.IMAGE


def _stale(ctr: list[str], tar: Path) -> bool:
    """Whether the node's image is not the one in `tar` (its config digest differs)."""
    import tarfile

    with tarfile.open(tar) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        (entry,) = [m for m in json.loads(member.read()) if build.IMAGE in m["RepoTags"]]
        config = entry["Config"].rsplit("/", 1)[-1].removesuffix(".json")
    done = subprocess.run([*ctr, "images", "inspect", build.IMAGE], capture_output=True, text=True)
    return config not in done.stdout


# --- git inside the node's network namespace -----------------------------------------


@dataclass
class NodeGitDaemon:
    node: Node
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeGitDaemon:
        self.port = random.randint(20000, 40000)
        self.proc = subprocess.Popen(
            in_node_netns(self.node, "git", "daemon", "--reuseaddr", "--export-all",
                          "--informative-errors", f"--listen={self.node.node_ip}",
                          f"--listen={pod_gateway()}",
                          f"--port={self.port}", f"--base-path={self.root}", str(self.root)),
            env=_server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"git daemon exited with {self.proc.returncode}")
            try:  # the host reaches the node's address over the veth
                socket.create_connection((self.node.node_ip, self.port), 0.5).close()
                return True
            except OSError:
                return False

        wait("git daemon in the node's network namespace", listening, 10)
        return self

    def url(self, name: str) -> str:
        """On the pod bridge's gateway: the node's pods have a route to their subnet only
        (the CNI config sets no default route), the controller (hostNetwork) is there."""
        return f"git://{pod_gateway()}:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def pod_gateway() -> str:
    """The CNI bridge's address in the node's network namespace (first of POD_CIDR)."""
    import ipaddress

    return str(next(ipaddress.ip_network(POD_CIDR).hosts()))


def bring_up_pod_network(kube_client: Any, namespace: str, image: str) -> None:
    """Run one pod to completion: the CNI bridge (and its gateway address, where git is
    served) exists only once a pod sandbox has been set up on the node."""
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "network-up"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                 "containers": [container("up", image, ["true"])]},
    })  # fmt: skip
    wait("a first pod on the node", lambda: core.read_namespaced_pod("network-up", namespace)
         .status.phase == "Succeeded", 60)  # fmt: skip
    core.delete_namespaced_pod("network-up", namespace)


# --- installing the controller -------------------------------------------------------


def overlay(dir: Path, image: str, node: Node, namespaces: list[str]) -> Path:
    """A kustomize overlay of deploy/: the test image, hostNetwork, a kubeconfig for the
    node's API server address, and the watched namespaces. Everything else is deploy/'s."""
    name, _, tag = image.rpartition(":")
    host, port = node.forwarder.sock.getsockname()[0], node.forwarder.port  # type: ignore[union-attr]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "node", "cluster": {
            "server": f"https://{host}:{port}", "certificate-authority": f"{SA_DIR}/ca.crt",
            "tls-server-name": "localhost"}}],
        "users": [{"name": "sa", "user": {"tokenFile": f"{SA_DIR}/token"}}],
        "contexts": [{"name": "node", "context": {"cluster": "node", "user": "sa"}}],
        "current-context": "node",
    }  # fmt: skip
    args = [f"--namespace={ns}" for ns in namespaces] + [
        "--project-namespace=", "--leader-election-namespace=$(POD_NAMESPACE)",
        "--lease-seconds=6", f"--git-image={build.IMAGE}",
    ]  # fmt: skip
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "devjobs-controller"},
        "spec": {"template": {"spec": {
            "hostNetwork": True,
            "containers": [{
                "name": "controller", "args": args,
                "env": [{"name": "KUBECONFIG", "value": "/etc/devjobs-kube/kubeconfig"}],
                "volumeMounts": [{"name": "kube", "mountPath": "/etc/devjobs-kube"}],
            }],
            "volumes": [{"name": "kube", "configMap": {"name": "devjobs-test-kubeconfig"}}],
        }}},
    }  # fmt: skip
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "devjobs-test-kubeconfig", "namespace": CONTROLLER_NS},
        "data": {"kubeconfig": yaml.safe_dump(kubeconfig)},
    }
    (dir / "kubeconfig.yaml").write_text(yaml.safe_dump(configmap))
    (dir / "patch.yaml").write_text(yaml.safe_dump(patch))
    (dir / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize refuses absolute paths: deploy/ relative to the overlay.
        "resources": [os.path.relpath(REPO / "deploy", dir), "kubeconfig.yaml"],
        "images": [{"name": "devjobs-controller", "newName": name, "newTag": tag}],
        "patches": [{"path": "patch.yaml"}],
    }))  # fmt: skip
    return dir


@dataclass
class Installed:
    kube_api: Any
    namespaces: list[str]
    git: NodeGitDaemon
    repos: RepoRoot

    def pod_log(self) -> str:
        out = []
        for pod in self.controller_pods():
            name = pod["metadata"]["name"]
            done = kubectl(self.kube_api, "-n", CONTROLLER_NS, "logs", name, "--tail=200",
                           check=False)  # fmt: skip
            out.append(f"--- {name}\n{done.stdout}{done.stderr}")
        return "\n".join(out)

    def controller_pods(self) -> list[dict[str, Any]]:
        done = kubectl(self.kube_api, "-n", CONTROLLER_NS, "get", "pods", "-o", "json", "-l",
                       "app.kubernetes.io/instance=devjobs-controller")  # fmt: skip
        items: list[dict[str, Any]] = json.loads(done.stdout)["items"]
        return items

    def environment(
        self, kube_client: Any, index: int, image: str, repo: str, jobs: list[dict[str, Any]]
    ) -> tuple[Catalyst, str, Callable[[], str]]:
        """Catalyst in watched namespace `index`: a served repository `repo` (whose
        `scripts/check.sh` reads a file of the clone), the Project of it with `jobs`, the
        Environment at its commit. Returns Catalyst, the commit, and what to show when a
        wait fails (conditions, job pods, the controller's log)."""
        _repo, sha = source_repo(self.repos, repo, image, {"scripts/check.sh": CHECK_SH})
        catalyst = Catalyst(kube_client, self.namespaces[index], image)
        catalyst.create(self.git.url(repo), sha, jobs)

        def why() -> str:
            return (f"conditions: {json.dumps(catalyst.conditions(), indent=1)}\n"
                    f"pods: {catalyst.job_pods_log()}\ncontroller:\n{self.pod_log()}")  # fmt: skip

        return catalyst, sha, why


@pytest.fixture(scope="module")
def installed(
    kube_api: Any,
    kube_client: Any,
    kube_node: Any,
    catalyst_crds: list[str],
    controller_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installed]:
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_client)
    suffix = f"{random.getrandbits(16):04x}"
    namespaces = [f"e2e-lifecycle-{suffix}", f"e2e-initfail-{suffix}", f"e2e-team-{suffix}"]
    # The first two Environments are unlabelled (the test plays Catalyst), so their jobs
    # run in their own namespaces: labelled as Catalyst labels its environment namespaces,
    # where deploy/admission.yaml lets the controller write. The third is a team namespace
    # of the real operator, which makes and labels the target namespaces itself.
    labels = {catalyst.NAMESPACE_TYPE_LABEL: catalyst.NAMESPACE_TYPE_ENVIRONMENT}
    for ns in namespaces[:2]:
        core.create_namespace({"metadata": {"name": ns, "labels": labels}})
    core.create_namespace({"metadata": {"name": namespaces[2]}})
    bring_up_pod_network(kube_client, namespaces[0], kube_node.test_image)
    root = tmp_path_factory.mktemp("e2e-git")
    root.chmod(0o755)
    git = NodeGitDaemon(kube_node, root).start()
    with tempfile.TemporaryDirectory(prefix="dj-overlay-") as tmp:
        kustomization = overlay(Path(tmp), controller_image, kube_node, namespaces)
        done = kubectl(kube_api, "apply", "-k", str(kustomization), check=False)
    assert done.returncode == 0, done.stderr
    result = Installed(kube_api, namespaces, git, RepoRoot(root))
    try:
        wait("the controller pod to be Ready",
             lambda: any(c.get("type") == "Ready" and c.get("status") == "True"
                         for p in result.controller_pods()
                         for c in (p.get("status") or {}).get("conditions") or []),
             90, why=lambda: json.dumps([p.get("status") for p in result.controller_pods()])[:3000]
             + "\n" + result.pod_log())  # fmt: skip
        yield result
    finally:
        # Only what the overlay added or runs: the Project CRD and RBAC stay for other tests.
        kubectl(kube_api, "-n", CONTROLLER_NS, "delete", "deployment", "devjobs-controller",
                "configmap", "devjobs-test-kubeconfig", "--ignore-not-found", "--wait=false",
                check=False)  # fmt: skip
        kubectl(kube_api, "-n", CONTROLLER_NS, "delete", "lease", "devjobs-controller",
                "--ignore-not-found", check=False)  # fmt: skip
        # Later tests' workload pods must not wait for a controller that no longer runs.
        for kind in ("mutatingadmissionpolicybinding", "mutatingadmissionpolicy"):
            kubectl(kube_api, "delete", kind, "devjobs-predeploy-gate", "--ignore-not-found",
                    check=False)  # fmt: skip
        for ns in namespaces:
            core.delete_namespace(ns, propagation_policy="Background")
        git.stop()


CHECK_SH = "test -f scripts/check.sh && echo checked from the clone\n"


def test_the_installed_controller_pod_drives_an_environment_from_postbuild_to_postdeploy(
    installed: Installed, kube_client: Any, kube_node: Any
) -> None:
    image = kube_node.test_image
    catalyst, sha, why = installed.environment(kube_client, 0, image, "app", [
        # Reads a file of the clone: proves the clone (controller image as git image) ran.
        project_job("check", "PostBuild", ["sh", "scripts/check.sh"], image),
        project_job("migrate", "PreDeploy", ["sh", "-c", "echo migrated"], image),
        project_job("smoke", "PostDeploy", ["sh", "-c", "echo smoke ok"], image),
    ])  # fmt: skip

    waiting = wait("Waiting conditions", lambda: catalyst.conditions().get("Job.app.check"),
                   60, why)  # fmt: skip
    assert (waiting["status"], waiting["reason"]) == ("Unknown", "Waiting")
    catalyst.set_phase("Building")
    catalyst.built(sha, why=why)

    # PostBuild fires: check (PostBuild) and migrate (PreDeploy), not smoke.
    post_build = wait("the PostBuild Job", lambda: catalyst.jobs_of("PostBuild"), 30, why)
    pre_deploy = wait("the PreDeploy Job", lambda: catalyst.jobs_of("PreDeploy"), 30, why)
    for made in (*post_build, *pre_deploy):
        assert made.metadata.annotations["devjobs.dev/commit"] == sha
        (owner,) = made.metadata.owner_references
        assert (owner.kind, owner.name) == ("Environment", "pr-1")
        # Written by the pod's identity: its ServiceAccount, through deploy/'s RBAC.
        assert {m.manager for m in made.metadata.managed_fields} >= {"devjobs"}
    assert catalyst.jobs_of("PostDeploy") == []
    gate = catalyst.wait_conditions("PreDeploy gate True", {"PreDeployJobsSucceeded": "True"},
                                    120, why)["PreDeployJobsSucceeded"]  # fmt: skip
    assert gate["message"].startswith(f"commit {sha[:7]}")

    catalyst.set_phase("Deploying")
    catalyst.deploy_web()
    catalyst.set_phase("Ready")
    (smoke,) = wait("the PostDeploy Job", lambda: catalyst.jobs_of("PostDeploy"), 120, why)
    assert smoke.metadata.annotations["devjobs.dev/commit"] == sha

    done = catalyst.wait_conditions("every job's condition True", {"JobsSucceeded": "True"},
                                    120, why)  # fmt: skip
    for job in ("check", "migrate", "smoke"):
        cond = done[f"Job.app.{job}"]
        assert (cond["status"], cond["reason"]) == ("True", "Succeeded"), why()
        assert cond["message"].startswith(f"commit {sha[:7]}"), cond
    assert done["JobsSucceeded"]["message"] == f"commit {sha[:7]}: 3 of 3 jobs succeeded"
    assert set(catalyst.devjobs_jobs()) == {j.metadata.name for j in (*post_build, *pre_deploy,
                                                                      smoke)}  # fmt: skip
    # The pod holds the Lease it elected itself with.
    (pod,) = installed.controller_pods()
    lease = kubectl(installed.kube_api, "-n", CONTROLLER_NS, "get", "lease", "devjobs-controller",
                    "-o", "json")  # fmt: skip
    assert json.loads(lease.stdout)["spec"]["holderIdentity"].startswith(pod["metadata"]["name"])

    # Settled: nothing more is written (no loop on its own writes).
    version = catalyst.env()["metadata"]["resourceVersion"]
    time.sleep(5)
    assert catalyst.env()["metadata"]["resourceVersion"] == version, why()


def test_an_init_container_job_failing_in_the_workload_pod_becomes_false_failed(
    installed: Installed, kube_client: Any, kube_node: Any
) -> None:
    image = kube_node.test_image
    catalyst, sha, why = installed.environment(kube_client, 1, image, "app-initfail", [
        project_job("seed", "PreDeploy", ["sh", "-c", "echo seeding; exit 4"], image,
                    runAs="InitContainer"),
        project_job("smoke", "PostDeploy", ["true"], image),
    ])  # fmt: skip
    catalyst.built(sha, why=why)
    seed = wait("the seed job waiting", lambda: catalyst.conditions().get("Job.app.seed"), 30, why)
    assert seed["status"] == "Unknown", why()
    catalyst.deploy_web()  # the controller adds its init containers: a rollout

    failed = catalyst.wait_conditions("Job.app.seed False", {"Job.app.seed": "False"}, 120,
                                      why)["Job.app.seed"]  # fmt: skip
    assert failed["reason"] == "Failed", why()
    assert "devjobs-app-seed" in failed["message"] and "code 4" in failed["message"], failed
    assert failed["message"].startswith(f"commit {sha[:7]}")
    conditions = catalyst.conditions()
    assert conditions["JobsSucceeded"]["status"] == "False"
    assert "failed: app/seed" in conditions["JobsSucceeded"]["message"]
    # The workload never became Ready: PostDeploy did not fire.
    assert catalyst.jobs_of("PostDeploy") == []
    assert conditions["Job.app.smoke"]["status"] == "Unknown"
    # The pods it read are labelled for it; the label came with the init containers.
    web: Any = catalyst.apps.read_namespaced_deployment("web", catalyst.ns)
    assert web.spec.template.metadata.labels["devjobs.dev/workload"] == "pr-1"


def test_the_installed_controller_pod_runs_a_real_operators_environment_across_two_commits(
    installed: Installed,
    kube_client: Any,
    kube_node: Any,
    catalyst_operator: CatalystOperator,
    app_server: AppServer,  # noqa: F811
) -> None:
    """devjobs as users install it (`deploy/`: its RBAC, admission policies and the
    PreDeploy gate) under the real Catalyst operator (production mode): the pod resolves
    the Project's jobs from the team namespace and the repository, runs them in the target
    namespace, opens the gate of the operator's pod, and at a second commit runs them
    again, its log records replaced."""
    team = installed.namespaces[2]
    cluster = Cluster(kube_client)
    # Catalyst's own Project CRD (the operator's fixture installs it) prunes `jobs`.
    crds.install(kube_client, crds.project_crd_files())
    image = kube_node.test_image
    repo, url, first = app_server.repo()
    repo.write(".devcontainer/devcontainer.json", json.dumps({"image": image}))
    first = repo.commit("devcontainer")
    cluster.create_project(team, "shop", url, production_templates())
    jobs = [
        project_job("check", "PostBuild", ["sh", "-c", "echo checked $(cat index.html)"], image),
        project_job("migrate", "PreDeploy", ["sh", "-c", "echo migrated"], image),
        project_job("smoke", "PostDeploy", ["sh", "-c", "echo smoke ok"], image),
    ]
    cluster.custom.patch_namespaced_custom_object(
        catalyst.GROUP, catalyst.VERSION, team, "projects", "shop",
        {"spec": {"sources": [{"name": SOURCE, "repositoryUrl": url, "branch": "main",
                               "jobs": jobs}]}},
    )  # fmt: skip
    placed = cluster.create_environment(
        team, "shop", "pr-1", "deployment", first, catalyst.MODE_PRODUCTION
    )
    kube = Kube(kube_client)

    def why() -> str:
        found = conditions(cluster, team, placed.name)
        return f"conditions: {json.dumps(found)}\ncontroller:\n{installed.pod_log()}"

    def succeeded_at(sha: str) -> Callable[[], bool]:
        def done() -> bool:
            jobs = conditions(cluster, team, placed.name).get("JobsSucceeded", {})
            return bool(
                jobs.get("status") == "True" and jobs["message"].startswith(f"commit {sha[:7]}")
            )

        return done

    try:
        wait("every job at the first commit", succeeded_at(first), READY_TIMEOUT, why)
        (pod,) = [p for p in cluster.core.list_namespaced_pod(placed.target,
                  label_selector="app=web").items]  # fmt: skip
        assert not pod.spec.scheduling_gates and cluster.phase(placed) == catalyst.PHASE_READY
        records = kube.list(f"/api/v1/namespaces/{placed.target}/configmaps",
                            "devjobs.dev/component")["items"]  # fmt: skip
        kinds = sorted(r["metadata"]["labels"]["devjobs.dev/component"] for r in records)
        assert kinds == ["log-tail"] * 3 + ["predeploy-openings"], kinds

        repo.write("index.html", "the second commit\n")
        second = repo.commit("second")
        set_commit(cluster, placed, second)
        wait("every job at the second commit", succeeded_at(second), READY_TIMEOUT, why)
        wait(
            "the second run's log record",
            lambda: (
                "the second commit"
                in "".join(read_log_tail(kube, placed.target, placed.name, "app/check").values())
            ),
            60,
            why,
        )
        events = kube.list(f"/api/v1/namespaces/{team}/events")["items"]
        warnings = [e["message"] for e in events if e.get("type") == "Warning"]
        assert warnings == [], warnings
    finally:
        cluster.custom.delete_namespaced_custom_object(
            catalyst.GROUP, catalyst.VERSION, team, "environments", placed.name
        )
        wait("the target namespace to be gone",
             lambda: not cluster.namespace_exists(placed.target), 120, why)  # fmt: skip
