"""devjobs' controller under the real Catalyst operator (tier 2).

**The operator is real** (`catalyst_operator`: Catalyst's own `manager`, built from its
unmodified source); **devjobs' controller runs as users run it**, in this process,
watching the team namespace where the Project and Environment live. The Environment is
labelled as the operator needs; everything it deploys, and everything devjobs runs for
it, is in the target namespace `<team>-<project>-<environment>`. The controller is given
its plan directly (the resolver's own path is tested elsewhere), so the jobs run in the
test node's image without a clone.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devjobs import catalyst
from devjobs.controller.decide import Settings
from devjobs.controller.main import Config, Controller, PlanResolver, resolve_plan
from devjobs.kube.client import Kube, connect
from devjobs.kube.podspec import RenderOptions
from devjobs.resolver.models import JobPlan, Trigger
from tests.catalyst import job_config, job_plan
from tests.cluster import crds
from tests.cluster.catalyst_operator import CatalystOperator
from tests.test_catalyst_operator import (  # noqa: F401 (fixtures)
    BUILD,
    READY_TIMEOUT,
    AppServer,
    Cluster,
    Placed,
    app_server,
    cluster,
    place_development,
    place_helm,
    place_production,
    production_templates,
    set_commit,
    wait_until,
)

pytestmark = pytest.mark.tier2

MODES = (catalyst.MODE_PRODUCTION, catalyst.MODE_DEVELOPMENT, catalyst.MODE_HELM)
"""The deployment modes the operator supports with a workload devjobs can follow."""


@dataclass
class Stage:
    """What a test needs to place an Environment in any mode and move it to a new commit:
    helm mode builds, so each commit's built image must be on the node first."""

    cluster: Cluster
    app_server: AppServer
    operator: CatalystOperator
    node: Any

    def place(self, mode: str, team: str) -> Placed:
        if mode == catalyst.MODE_PRODUCTION:
            return place_production(self.cluster, self.app_server, team)
        if mode == catalyst.MODE_DEVELOPMENT:
            return place_development(self.cluster, self.app_server, self.node, team)
        return place_helm(self.cluster, self.app_server, self.operator, team)

    def new_commit(self, placed: Placed, text: str) -> str:
        """Commit `text` as the app's page and point the Environment at it."""
        repo = self.app_server.repos[-1]
        repo.write("index.html", f"{text}\n")
        sha = repo.commit(text)
        if placed.mode == catalyst.MODE_HELM:
            self.operator.import_web_image(
                catalyst.build_image(placed.project, BUILD, placed.name, sha)
            )
        set_commit(self.cluster, placed, sha)
        return sha


@pytest.fixture
def stage(
    cluster: Cluster,  # noqa: F811
    app_server: AppServer,  # noqa: F811
    catalyst_operator: CatalystOperator,
    kube_node: Any,
) -> Stage:
    return Stage(cluster, app_server, catalyst_operator, kube_node)


def the_plan(image: str, url: str) -> JobPlan:
    def job(name: str, trigger: Trigger, script: str) -> Any:
        return job_config(name, trigger, "app", script, image, "/workspaces/app")

    return job_plan(
        {"app": url},
        job("check", Trigger.POST_BUILD, "echo checked"),
        job("migrate", Trigger.PRE_DEPLOY, "echo migrated"),
        job("smoke", Trigger.POST_DEPLOY, "echo smoke ok"),
    )


@contextmanager
def devjobs_controller(
    kube_api: Any,
    team: str,
    plan: JobPlan | None = None,
    *,
    resolver: PlanResolver | None = None,
    cache_dir: Path | None = None,
) -> Iterator[Controller]:
    """devjobs' controller of the team namespace on a thread, given `plan` (or a
    `resolver`; neither: the controller's own, which resolves the Project); stopped on
    leaving."""
    if plan is not None:
        given = plan

        def resolver(project: Any, env: Any, cache: Path | None) -> JobPlan:
            return given

    config = Config(
        namespaces=(team,),
        project_namespace=None,
        settings=Settings(render=RenderOptions(workspace="empty")),
        cache_dir=cache_dir,
    )
    controller = Controller(
        connect(Path(kube_api.kubeconfig)), config, resolver=resolver or resolve_plan
    )
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield controller
    finally:
        stop.set()
        thread.join(10)


def conditions(api: Cluster, team: str, name: str) -> dict[str, dict[str, Any]]:
    env = api.custom.get_namespaced_custom_object(
        catalyst.GROUP, catalyst.VERSION, team, "environments", name
    )
    return {c["type"]: c for c in (env.get("status") or {}).get("conditions") or []}


def wait_condition(
    api: Cluster, team: str, name: str, type_: str, status: str = "True"
) -> dict[str, dict[str, Any]]:
    """Wait until the Environment's condition `type_` has `status`; returns all of them
    (a time-out says what they were)."""
    found: dict[str, dict[str, Any]] = {}

    def reached() -> bool:
        found.update(conditions(api, team, name))
        return found.get(type_, {}).get("status") == status

    try:
        wait_until(f"{type_} {status}", reached, READY_TIMEOUT)
    except AssertionError as error:
        raise AssertionError(f"{error}: {found}") from None
    return conditions(api, team, name)


def wait_message(
    api: Cluster, team: str, name: str, type_: str, text: str
) -> dict[str, dict[str, Any]]:
    """Wait until condition `type_`'s message holds `text` (a finished job's log tail comes
    in a round after its result); returns all the conditions."""

    def shown() -> bool:
        return text in conditions(api, team, name).get(type_, {}).get("message", "")

    wait_until(f"{text!r} in {type_}", shown, 60)
    return conditions(api, team, name)


@pytest.mark.parametrize("mode", MODES)
def test_devjobs_runs_every_point_in_the_target_namespace_and_leaves_nothing_behind(
    kube_api: Any,
    kube_client: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    stage: Stage,
    namespace: str,
    mode: str,
) -> None:
    placed = stage.place(mode, namespace)
    url = f"git://{placed.team}/app"  # only named in the plan: the jobs do not clone
    with devjobs_controller(kube_api, namespace, the_plan(kube_node.test_image, url)) as ctl:
        cluster.wait_phase(placed, catalyst.PHASE_READY)
        found = wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
        for job in ("check", "migrate", "smoke"):
            assert found[f"Job.app.{job}"]["status"] == "True", found
        assert found["PreDeployJobsSucceeded"]["status"] == "True"

        kube = Kube(kube_client)
        in_target = kube.list(f"/apis/batch/v1/namespaces/{placed.target}/jobs")["items"]
        ours = [j for j in in_target if j["metadata"]["labels"].get("devjobs.dev/job")]
        assert sorted(j["metadata"]["labels"]["devjobs.dev/job"] for j in ours) == [
            "check", "migrate", "smoke",
        ]  # fmt: skip
        for job in ours:
            # Owner references cannot cross namespaces: the Environment's is named instead.
            assert "ownerReferences" not in job["metadata"]
            annotations = job["metadata"]["annotations"]
            assert annotations["devjobs.dev/environment-namespace"] == namespace
        assert kube.list(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"] == []
        wait_message(cluster, namespace, placed.name, "Job.app.smoke", "smoke ok")
        records = kube.list(
            f"/api/v1/namespaces/{placed.target}/configmaps",
            "devjobs.dev/component=log-tail",
        )["items"]
        assert len(records) == 3

        # The operator deletes the target namespace with the Environment; devjobs has
        # nothing left anywhere and does not keep failing over what is gone.
        cluster.custom.delete_namespaced_custom_object(
            catalyst.GROUP, catalyst.VERSION, namespace, "environments", placed.name
        )
        wait_until(
            "the target namespace to be gone",
            lambda: not cluster.namespace_exists(placed.target),
            120,
        )
        errors = ctl.stats.errors
        reconciles = ctl.stats.reconciles
        threading.Event().wait(5)
        assert ctl.stats.errors == errors
        assert ctl.stats.reconciles - reconciles <= 2


@pytest.mark.parametrize("mode", MODES)
def test_a_migrate_job_gets_catalyst_secrets_and_what_it_prints_of_them_is_masked(
    kube_api: Any,
    kube_client: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    stage: Stage,
    namespace: str,
    mode: str,
) -> None:
    """The app reads `catalyst-secrets`: in development mode by the operator's envFrom, in
    helm mode by the chart's (the test chart's, as a chart must), in production mode one
    key by `config.env` secretKeyRef. A PreDeploy job with the runtime context gets what
    the app gets, and DEVJOBS_ENVIRONMENT_URL; its kept log shows the value masked."""
    if mode == catalyst.MODE_PRODUCTION:
        ref = {"name": catalyst.SECRETS, "key": "DATABASE_PASSWORD", "optional": True}
        app_env = [{"name": "DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": ref}}]
        placed = place_production(stage.cluster, stage.app_server, namespace, env=app_env)
    else:
        placed = stage.place(mode, namespace)
    password = "hunter2-correct-horse"
    script = 'echo "db password is $DATABASE_PASSWORD"; echo "url is $DEVJOBS_ENVIRONMENT_URL"'
    migrate = job_config(
        "migrate", Trigger.PRE_DEPLOY, "app", script, kube_node.test_image, "/workspaces/app",
        runtime_context=True,
    )  # fmt: skip
    plan = job_plan({"app": f"git://{placed.team}/app"}, migrate)
    kube = Kube(kube_client)
    wait_until("the target namespace", lambda: cluster.namespace_exists(placed.target), 60)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": catalyst.SECRETS},
        "stringData": {"DATABASE_PASSWORD": password},
    }
    kube.request("POST", f"/api/v1/namespaces/{placed.target}/secrets", body=secret)
    with devjobs_controller(kube_api, namespace, plan):
        cluster.wait_phase(placed, catalyst.PHASE_READY)
        wait_condition(cluster, namespace, placed.name, "Job.app.migrate")
        (job,) = [
            j
            for j in kube.list(f"/apis/batch/v1/namespaces/{placed.target}/jobs")["items"]
            if j["metadata"]["labels"].get("devjobs.dev/job") == "migrate"
        ]
        main = job["spec"]["template"]["spec"]["containers"][0]
        if mode == catalyst.MODE_PRODUCTION:
            assert app_env[0] in main["env"], main
        else:
            assert {"secretRef": {"name": catalyst.SECRETS, "optional": True}} in main["envFrom"]
        url = cluster.environment(placed)["status"]["url"]  # type: ignore[index]

        def record() -> dict[str, Any] | None:
            records = kube.list(
                f"/api/v1/namespaces/{placed.target}/configmaps", "devjobs.dev/job=migrate"
            )["items"]
            return records[0] if records else None

        wait_until("the log record", lambda: record() is not None, 60)
        kept = "\n".join((record() or {}).get("data", {}).values())
        assert "db password is ***" in kept, kept
        assert f"url is {url}" in kept
        message = conditions(cluster, namespace, placed.name)["Job.app.migrate"]["message"]
        assert password not in kept and password not in message
        assert "db password is ***" in message


def test_the_projects_own_jobs_in_the_team_namespace_are_resolved_and_run(
    kube_api: Any,
    kube_client: Any,
    kube_node: Any,
    cluster: Cluster,  # noqa: F811
    app_server: AppServer,  # noqa: F811
    namespace: str,
    tmp_path: Path,
) -> None:
    """No plan given: the controller reads the Project where the operator does (the team's
    namespace), fetches the source's devcontainer files from its repository at the
    Environment's commit, and runs the Project's jobs (the jobs-aware Project CRD)."""
    # Installed again: Catalyst's own Project CRD (the operator's fixture installs it)
    # prunes `jobs`, and either may have been installed last in this session.
    crds.install(kube_client, crds.project_crd_files())
    repo, url, _ = app_server.repo()
    repo.write(".devcontainer/devcontainer.json", json.dumps({"image": kube_node.test_image}))
    sha = repo.commit("devcontainer")
    templates = production_templates()
    cluster.create_project(namespace, "shop", url, templates)
    jobs = [
        {
            "name": "check",
            "trigger": "PostBuild",
            "command": ["sh", "-c", "echo from the project"],
            "image": kube_node.test_image,
        },
        {
            "name": "smoke",
            "trigger": "PostDeploy",
            "command": ["sh", "-c", "echo smoke ok"],
            "image": kube_node.test_image,
        },
    ]
    cluster.custom.patch_namespaced_custom_object(
        catalyst.GROUP, catalyst.VERSION, namespace, "projects", "shop",
        {"spec": {"sources": [{"name": "app", "repositoryUrl": url, "branch": "main",
                               "jobs": jobs}]}},
    )  # fmt: skip
    placed = cluster.create_environment(
        namespace, "shop", "pr-9", "deployment", sha, catalyst.MODE_PRODUCTION
    )
    with devjobs_controller(kube_api, namespace, cache_dir=tmp_path / "cache"):
        cluster.wait_phase(placed, catalyst.PHASE_READY)
        wait_condition(cluster, namespace, placed.name, "JobsSucceeded")
        wait_message(cluster, namespace, placed.name, "Job.app.check", "from the project")
        found = wait_message(cluster, namespace, placed.name, "Job.app.smoke", "smoke ok")
        assert found["JobsSucceeded"]["message"].startswith(f"commit {sha[:7]}:")
