"""Job variables from one key of a Secret or ConfigMap, in Kubernetes' own shape inside
`env` (`{"secretKeyRef": {"name": "db", "key": "url"}}`, `configMapKeyRef`): read
strictly with their place, overridden by name, shown in the plan as the reference,
rendered as `valueFrom`, masked in kept logs (Secrets only), said out loud by a local
run, and accepted by the real API server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from devjobs.kube.client import Kube
from devjobs.kube.masking import MASK, mask, secret_references, secret_values
from devjobs.kube.podspec import RenderOptions, runtime_context
from devjobs.kube.render import render
from devjobs.resolver.devcontainer import read_devcontainer
from devjobs.resolver.fields import InvalidField
from devjobs.resolver.jobspec import JobSpec
from devjobs.resolver.merge import ProjectJob, SourceDefaults, merge_source
from devjobs.resolver.models import (
    EnvFromSource,
    EnvVarSource,
    JobConfig,
    KeySelector,
    NameRef,
    Origin,
    Trigger,
)
from devjobs.runner.local.process import cluster_only, local_env
from tests.cluster import crds
from tests.render_fixtures import environment, job, plan

ROOT = Path(__file__).resolve().parent.parent
URL = EnvVarSource(secret_key_ref=KeySelector(name="db", key="url"))
FEATURE = EnvVarSource(config_map_key_ref=KeySelector(name="flags", key="feature", optional=True))
WRITTEN: dict[str, Any] = {
    "LOG_LEVEL": "debug",
    "DATABASE_URL": {"secretKeyRef": {"name": "db", "key": "url"}},
    "FEATURE": {"configMapKeyRef": {"name": "flags", "key": "feature", "optional": True}},
}
SECRET_VALUE = "postgres://app:hunter2@db.internal/app"


# --- reading ---------------------------------------------------------------------------


def test_env_values_are_strings_or_one_key_of_a_secret_or_config_map() -> None:
    spec = JobSpec.read({"name": "m", "env": WRITTEN})
    assert spec.env == {"LOG_LEVEL": "debug", "DATABASE_URL": URL, "FEATURE": FEATURE}


@pytest.mark.parametrize(
    ("value", "where", "message"),
    [
        ({}, (), "must name exactly one of secretKeyRef, configMapKeyRef"),
        ({**WRITTEN["DATABASE_URL"], **WRITTEN["FEATURE"]}, (),
         "must name exactly one of secretKeyRef, configMapKeyRef"),
        ({"secretRef": {"name": "db"}}, ("secretRef",), "unknown field"),
        ({"secretKeyRef": {"name": "db"}}, ("secretKeyRef", "key"), "required field is missing"),
        ({"secretKeyRef": {"key": "url"}}, ("secretKeyRef", "name"), "required field is missing"),
        ({"secretKeyRef": {"name": "db", "key": "url", "prefix": "X"}},
         ("secretKeyRef", "prefix"), "unknown field"),
        ({"secretKeyRef": "db"}, ("secretKeyRef",), "must be an object, not a string"),
        ({"secretKeyRef": {"name": "Db", "key": "url"}}, ("secretKeyRef", "name"),
         "'Db' is not a valid object name"),
        ({"secretKeyRef": {"name": "db\n", "key": "url"}}, ("secretKeyRef", "name"),
         "is not a valid object name"),
        ({"secretKeyRef": {"name": "d" * 254, "key": "url"}}, ("secretKeyRef", "name"),
         "must be at most 253 characters"),
        ({"configMapKeyRef": {"name": "flags", "key": "a/b"}}, ("configMapKeyRef", "key"),
         "'a/b' is not a valid key"),
        ({"configMapKeyRef": {"name": "flags", "key": "..x"}}, ("configMapKeyRef", "key"),
         "must not be '.' or start with '..'"),
        ({"configMapKeyRef": {"name": "flags", "key": "k" * 254}}, ("configMapKeyRef", "key"),
         "must be at most 253 characters"),
        ({"configMapKeyRef": {"name": "flags", "key": "f", "optional": "yes"}},
         ("configMapKeyRef", "optional"), "must be true or false, not a string"),
        (["db", "url"], (), "must be a string or an object with secretKeyRef or configMapKeyRef"),
    ],
)  # fmt: skip
def test_a_bad_reference_is_refused_at_its_path(
    value: object, where: tuple[str, ...], message: str
) -> None:
    with pytest.raises(InvalidField) as error:
        JobSpec.read({"name": "m", "env": {"DATABASE_URL": value}})
    assert error.value.path == ("env", "DATABASE_URL", *where)
    assert message in error.value.message


def test_optional_null_is_as_absent_as_the_api_server_makes_it() -> None:
    spec = JobSpec.read(
        {"name": "m", "env": {"A": {"secretKeyRef": {"name": "s", "key": "k", "optional": None}}}}
    )
    assert spec.env == {"A": EnvVarSource(secret_key_ref=KeySelector(name="s", key="k"))}


def test_a_bad_reference_in_a_project_file_is_reported_at_file_line_col(tmp_path: Path) -> None:
    project = tmp_path / "project.yaml"
    project.write_text(
        yaml.safe_dump(project_document([{"name": "m", "command": ["true"],
                       "env": {"DATABASE_URL": {"secretKeyRef": {"name": "db", "key": "a/b"}}}}]),
                       sort_keys=False)
    )  # fmt: skip
    done = devjobs("plan", str(project))
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith(f"devjobs: error: {project}:"), line
    assert line.endswith(
        ": spec.sources[0].jobs[0].env.DATABASE_URL.secretKeyRef.key: 'a/b' is not a valid key: "
        "only letters, digits, '-', '_' and '.'"
    ), line


def test_a_bad_reference_in_devcontainer_json_is_reported_at_file_line_col(
    tmp_path: Path,
) -> None:
    root = checkout(tmp_path, {"DATABASE_URL": {"secretKeyRef": {"name": "db", "keys": "url"}}})
    text = (root / ".devcontainer" / "devcontainer.json").read_text()
    column = text.index('"url"') + 1  # the offending field's value
    done = devjobs("plan", "--source", f"app={root}")
    assert done.returncode == 1
    assert done.stderr == (
        f"devjobs: error: .devcontainer/devcontainer.json:1:{column}: "
        "env.DATABASE_URL.secretKeyRef.keys: unknown field\n"
    )


# --- overriding ------------------------------------------------------------------------


def devcontainer_job(env: dict[str, Any]) -> JobConfig:
    return job(
        "migrate",
        Trigger.PRE_DEPLOY,
        source="app",
        env=env,
        origins=[Origin(kind="devcontainer", file="dc.json", pointer="/tasks/migrate")],
    )


def project_job(env: dict[str, Any]) -> ProjectJob:
    return ProjectJob(
        spec=JobSpec.read({"name": "migrate", "env": env}),
        origin=Origin(kind="project", file="project.yaml", pointer="/spec/sources/0/jobs/0"),
        where=lambda field: f"project.yaml:1:1: {field}",
    )


def merged_env(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = merge_source(
        "app", [devcontainer_job(base)], [project_job(override)], SourceDefaults("/w")
    )
    return merged.jobs[0].env


def test_a_project_reference_replaces_the_devcontainers_value_of_the_same_name() -> None:
    env = merged_env({"DATABASE_URL": "postgres://localhost/dev", "A": "1"}, WRITTEN)
    assert env == {"DATABASE_URL": URL, "A": "1", "LOG_LEVEL": "debug", "FEATURE": FEATURE}


def test_a_project_value_replaces_the_devcontainers_reference_of_the_same_name() -> None:
    env = merged_env({"DATABASE_URL": URL, "FEATURE": FEATURE}, {"DATABASE_URL": "sqlite://"})
    assert env == {"DATABASE_URL": "sqlite://", "FEATURE": FEATURE}


def checkout(tmp_path: Path, env: dict[str, Any], **config: Any) -> Path:
    root = tmp_path / "app"
    (root / ".devcontainer").mkdir(parents=True, exist_ok=True)
    document = {
        "customizations": {"devjobs": {"jobs": {"migrate": {"command": "true", "env": env}}}},
        **config,
    }
    (root / ".devcontainer" / "devcontainer.json").write_text(json.dumps(document))
    return root


def test_a_devcontainer_jobs_reference_wins_over_container_env_and_is_not_substituted(
    tmp_path: Path,
) -> None:
    root = checkout(
        tmp_path,
        {"DATABASE_URL": WRITTEN["DATABASE_URL"], "WHERE": "${localWorkspaceFolderBasename}"},
        image="alpine:3",
        containerEnv={"DATABASE_URL": "postgres://localhost/dev", "CI": "true"},
    )
    found = read_devcontainer(root, source="app", basename="app")
    assert found is not None
    (migrate,) = found.jobs
    assert migrate.env == {"DATABASE_URL": URL, "CI": "true", "WHERE": "app"}


# --- the plan --------------------------------------------------------------------------


def project_document(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "catalyst.catalyst.dev/v1alpha1",
        "kind": "Project",
        "metadata": {"name": "shop"},
        "spec": {"sources": [{"name": "app", "repositoryUrl": "https://git.example/app.git",
                              "branch": "main", "jobs": jobs}]},
    }  # fmt: skip


def devjobs(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, without the caller's own DEVJOBS_* settings or values of the
    variables these tests reference (the process backend passes this machine's on)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DEVJOBS_") and key not in WRITTEN
    }
    return subprocess.run(
        [sys.executable, "-m", "devjobs", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT), "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        timeout=120,
    )


def test_the_plan_shows_the_reference_in_kubernetes_shape_never_a_value(tmp_path: Path) -> None:
    root = checkout(tmp_path, {"LOG_LEVEL": "info"}, image="alpine:3")
    project = tmp_path / "project.yaml"
    project.write_text(yaml.safe_dump(project_document([{"name": "migrate", "env": WRITTEN}])))
    done = devjobs("plan", str(project), "--source", f"app={root}", "-o", "json")
    assert done.returncode == 0, done.stderr
    (migrate,) = json.loads(done.stdout)["jobs"]
    assert migrate["env"] == WRITTEN
    assert migrate["envFrom"] == []


# --- rendering -------------------------------------------------------------------------


def containers(options: RenderOptions, *jobs: JobConfig) -> list[dict[str, Any]]:
    rendered = render(plan(*jobs), environment(), options)
    spec = rendered.jobs[0].manifest["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_a_reference_is_rendered_as_value_from_in_the_plans_order() -> None:
    the_job = job("migrate", env={"LOG_LEVEL": "debug", "DATABASE_URL": URL, "FEATURE": FEATURE})
    (container,) = containers(RenderOptions(jobs=("migrate",), workspace="image"), the_job)
    assert container["env"] == [
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        {
            "name": "FEATURE",
            "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "feature", "optional": True}},
        },
    ]


def test_a_reference_is_part_of_the_jobs_spec() -> None:
    """Pointing at another key is another job: a new run, not the old one re-found."""
    options = RenderOptions(jobs=("migrate",))
    one = render(plan(job("migrate", env={"DATABASE_URL": URL})), environment(), options)
    other_key = EnvVarSource(secret_key_ref=KeySelector(name="db", key="admin-url"))
    other = render(plan(job("migrate", env={"DATABASE_URL": other_key})), environment(), options)
    assert one.jobs[0].name != other.jobs[0].name


def workload(*env: dict[str, Any]) -> dict[str, Any]:
    """The environment's Deployment, its main container `app` with `env`."""
    return {"spec": {"template": {"spec": {"containers": [{"name": "app", "env": list(env)}]}}}}


def test_the_jobs_own_references_and_values_win_over_the_runtime_context() -> None:
    app = workload(
        {"name": "DATABASE_URL", "value": "postgres://app-default/app"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "catalyst-secrets", "key": "t"}}},
    )
    runtime = runtime_context(app, "app", "https://pr-12.preview.example/")
    options = RenderOptions(trigger=Trigger.POST_DEPLOY, images={"*": "app:1"}, runtime=runtime)
    the_job = job("migrate", env={"DATABASE_URL": URL, "TOKEN": "fixed"})
    container = containers(options, the_job)[-1]
    assert container["env"] == [
        {"name": "DEVJOBS_ENVIRONMENT_URL", "value": "https://pr-12.preview.example/"},
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        {"name": "TOKEN", "value": "fixed"},
    ]
    # What the pod no longer reads is not masked either: only the job's own key is.
    pod = {"spec": {"containers": [container]}}
    assert secret_references(pod) == {"db": {"url"}}


# --- masking ---------------------------------------------------------------------------


def test_only_the_referenced_secret_keys_are_masked_and_config_map_keys_never() -> None:
    the_job = job("migrate", env={"DATABASE_URL": URL, "FEATURE": FEATURE})
    pod = {"spec": {"containers": containers(RenderOptions(jobs=("migrate",)), the_job)}}
    assert secret_references(pod) == {"db": {"url"}}


# --- a local run -----------------------------------------------------------------------


def test_a_local_run_names_each_variable_it_cannot_give_and_sets_only_values() -> None:
    the_job = job(
        "migrate",
        env={"LOG_LEVEL": "debug", "DATABASE_URL": URL, "FEATURE": FEATURE},
        env_from=[EnvFromSource(secret_ref=NameRef(name="app-secrets"), prefix="APP_")],
    )
    assert local_env(the_job) == {"LOG_LEVEL": "debug"}
    assert cluster_only([the_job]) == [
        "job web/migrate: DATABASE_URL comes from key 'url' of Secret 'db', which a local run "
        "does not read: devjobs leaves it unset",
        "job web/migrate: FEATURE comes from key 'feature' of ConfigMap 'flags', which a local "
        "run does not read: devjobs leaves it unset",
        "job web/migrate: envFrom names Secret 'app-secrets' (prefix APP_), which a local run "
        "does not read: devjobs sets none of its variables",
    ]


def test_devjobs_run_local_warns_once_per_variable_and_runs_the_job_without_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "app"
    (root / ".devcontainer").mkdir(parents=True)
    script = 'echo "url=${DATABASE_URL-unset} level=$LOG_LEVEL"'
    job_ = {"command": script, "trigger": "PostBuild", "env": WRITTEN,
            "envFrom": [{"configMapRef": {"name": "flags"}}]}  # fmt: skip
    config = {"customizations": {"devjobs": {"jobs": {"migrate": job_}}}}
    (root / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    done = devjobs("run", "--local", "--source", f"app={root}", "--backend", "process")
    assert done.returncode == 0, done.stderr
    assert "url=unset level=debug" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "local run does not read" in line]
    assert warnings == [
        "devjobs: warning: job app/migrate: DATABASE_URL comes from key 'url' of Secret 'db', "
        "which a local run does not read: devjobs leaves it unset",
        "devjobs: warning: job app/migrate: FEATURE comes from key 'feature' of ConfigMap "
        "'flags', which a local run does not read: devjobs leaves it unset",
        "devjobs: warning: job app/migrate: envFrom names ConfigMap 'flags', which a local run "
        "does not read: devjobs sets none of its variables",
    ]


# --- the real API server ---------------------------------------------------------------


def test_the_api_server_accepts_the_rendered_job_and_its_pod_masks_only_the_referenced_key(
    kube_client: Any, namespace: str
) -> None:
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_client)
    secret = {
        "metadata": {"name": "db"},
        "data": {
            "url": base64.b64encode(SECRET_VALUE.encode()).decode(),
            "admin-url": base64.b64encode(b"postgres://admin:not-referenced@db/app").decode(),
        },
    }
    core.create_namespaced_secret(namespace, secret)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "flags"}, "data": {"feature": "config-map-value"}}
    )
    the_job = job("migrate", env={"LOG_LEVEL": "debug", "DATABASE_URL": URL, "FEATURE": FEATURE})
    rendered = render(
        plan(the_job),
        environment(namespace=namespace, uid=""),
        RenderOptions(jobs=("migrate",), images={"*": "devjobs.test/busybox:1"}),
    )
    manifest = rendered.jobs[0].manifest
    batch: Any = client.BatchV1Api(kube_client)  # plain dicts, not the client's models
    batch.create_namespaced_job(namespace, manifest)
    kube = Kube(kube_client)
    pod = wait_for_pod(kube, namespace, rendered.jobs[0].name)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    values = secret_values(kube, namespace, pod)
    assert values == [SECRET_VALUE]
    log = f"connecting to {SECRET_VALUE}\nadmin is not-referenced\nfeature=config-map-value\n"
    assert mask(log, values) == (
        f"connecting to {MASK}\nadmin is not-referenced\nfeature=config-map-value\n"
    )


def wait_for_pod(kube: Kube, namespace: str, job_name: str) -> dict[str, Any]:
    """The pod the Job controller makes (tier 1 has no node: it stays Pending)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        path = f"/api/v1/namespaces/{namespace}/pods"
        pods = kube.list(path, f"job-name={job_name}")["items"]
        if pods:
            found: dict[str, Any] = pods[0]
            return found
        time.sleep(0.2)
    raise AssertionError(f"no pod for Job {job_name} after 60 s")


def test_a_project_jobs_reference_survives_the_jobs_aware_crd_and_reads_back(
    kube_client: Any, namespace: str
) -> None:
    from kubernetes import client

    # Installed here: Catalyst's narrower CRD has the same name and another test may
    # have installed it since.
    crds.install(kube_client, crds.project_crd_files())
    api: Any = client.CustomObjectsApi(kube_client)
    body = project_document([{"name": "migrate", "command": ["true"], "env": WRITTEN}])
    stored = api.create_namespaced_custom_object(
        "catalyst.catalyst.dev", "v1alpha1", namespace, "projects", body, field_validation="Strict"
    )
    (written,) = stored["spec"]["sources"][0]["jobs"]
    assert written["env"] == WRITTEN
    assert JobSpec.read(written).env == {
        "LOG_LEVEL": "debug",
        "DATABASE_URL": URL,
        "FEATURE": FEATURE,
    }
