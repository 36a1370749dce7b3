"""The real API server validates what `render` produces: server-side apply dry runs of
every rendered object, and the real limits the names must respect."""

from __future__ import annotations

from typing import Any

import pytest

from devjobs.kube.client import Kube, KubeError
from devjobs.kube.podspec import RenderOptions
from devjobs.kube.render import render
from devjobs.kube.workspace import GitCredentials
from devjobs.resolver import environment as envmod
from devjobs.resolver.models import RunAs, Trigger
from tests import catalyst
from tests.render_fixtures import environment_dict, job, plan, standard_plan


def _environment(namespace: str, name: str = "pr-12") -> envmod.Environment:
    return envmod.from_object(
        environment_dict(namespace=namespace, name=name, uid="0c4f3b8e-2a59-4a36-a3a0-5a3c2a3b8f11")
    )


@pytest.mark.parametrize("trigger", [Trigger.POST_DEPLOY, Trigger.PRE_DEPLOY])
@pytest.mark.parametrize(
    "credentials",
    [GitCredentials(), GitCredentials(secret="git"), GitCredentials(catalyst_installation_id="7")],
)
def test_rendered_jobs_pass_server_side_apply_dry_run(
    kube_client: Any, namespace: str, trigger: Trigger, credentials: GitCredentials
) -> None:
    kube = Kube(kube_client)
    rendered = render(
        standard_plan(),
        _environment(namespace),
        RenderOptions(trigger=trigger, git_credentials=credentials),
    )
    assert rendered.jobs
    for rendered_job in rendered.jobs:
        result = kube.apply(rendered_job.manifest, dry_run=True)
        assert result["metadata"]["name"] == rendered_job.name
        rules = result["spec"]["podFailurePolicy"]["rules"]
        assert rules == rendered_job.manifest["spec"]["podFailurePolicy"]["rules"]


def test_workload_patch_passes_dry_run_on_an_existing_deployment(
    kube_client: Any, namespace: str
) -> None:
    kube = Kube(kube_client)
    kube.apply(catalyst.deployment(namespace=namespace), field_manager="catalyst")
    rendered = render(
        standard_plan(), _environment(namespace), RenderOptions(trigger=Trigger.PRE_DEPLOY)
    )
    assert rendered.workload_patch is not None
    result = kube.apply(rendered.workload_patch, dry_run=True)
    names = [c["name"] for c in result["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["devjobs-clone-web", "devjobs-web-post-create", "devjobs-web-migrate"]


def test_job_names_of_63_characters_are_accepted_and_64_rejected(
    kube_client: Any, namespace: str
) -> None:
    """The real limit: the Job controller's pod label `batch.kubernetes.io/job-name`."""
    kube = Kube(kube_client)
    env = _environment(namespace, name="e" * 60)
    rendered = render(
        plan(job("a-long-job-name-" + "j" * 30)), env, RenderOptions(trigger=Trigger.POST_DEPLOY)
    )
    manifest = rendered.jobs[0].manifest
    assert len(manifest["metadata"]["name"]) == 63
    kube.apply(manifest, dry_run=True)
    too_long = {**manifest, "metadata": {**manifest["metadata"], "name": "x" * 64}}
    with pytest.raises(KubeError) as error:
        kube.apply(too_long, dry_run=True)
    assert error.value.status == 422


def test_initcontainer_run_as_jobs_are_not_rendered_as_jobs(
    kube_client: Any, namespace: str
) -> None:
    p = plan(job("m", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER))
    rendered = render(p, _environment(namespace), RenderOptions(trigger=Trigger.PRE_DEPLOY))
    assert rendered.jobs == ()
