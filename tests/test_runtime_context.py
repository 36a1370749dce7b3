"""Jobs run with the app's runtime context, and what they print of its Secrets is masked
in everything devjobs keeps (pure parts; `tests/test_devjobs_under_catalyst.py` runs them
under the real operator)."""

from __future__ import annotations

from typing import Any

import pytest

from devjobs.kube.masking import MASK, mask, secret_references
from devjobs.kube.podspec import RenderOptions, RuntimeContext, runtime_context
from devjobs.kube.render import render
from devjobs.resolver.fields import InvalidField
from devjobs.resolver.jobspec import JobSpec
from devjobs.resolver.models import EnvFromSource, NameRef, Trigger
from tests.render_fixtures import environment, job, plan

APP = {
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "app:1",
                        "env": [
                            {"name": "DATABASE_URL", "value": "postgres://db/app"},
                            {"name": "MODE", "value": "app"},
                        ],
                        "envFrom": [{"secretRef": {"name": "catalyst-secrets", "optional": True}}],
                    },
                    {"name": "sidecar", "image": "proxy:1", "env": [{"name": "X", "value": "1"}]},
                ]
            }
        }
    }
}
URL = "https://pr-12.preview.example/"


def container(options: RenderOptions, *jobs: Any) -> dict[str, Any]:
    rendered = render(plan(*jobs), environment(), options)
    return dict(rendered.jobs[0].manifest["spec"]["template"]["spec"]["containers"][0])


def test_a_job_in_the_build_image_gets_the_main_containers_env_envfrom_and_url() -> None:
    runtime = runtime_context(APP, "app", URL)
    assert runtime.url == URL
    assert [e["name"] for e in runtime.env] == ["DATABASE_URL", "MODE"]
    assert runtime.env_from == ({"secretRef": {"name": "catalyst-secrets", "optional": True}},)
    options = RenderOptions(trigger=Trigger.PRE_DEPLOY, images={"*": "app:1"}, runtime=runtime)
    got = container(options, job("migrate", Trigger.PRE_DEPLOY, env={"MODE": "migrate"}))
    assert got["env"] == [
        {"name": "DATABASE_URL", "value": "postgres://db/app"},
        {"name": "DEVJOBS_ENVIRONMENT_URL", "value": URL},
        {"name": "MODE", "value": "migrate"},  # the job's own value wins, and comes last
    ]
    assert got["envFrom"] == [{"secretRef": {"name": "catalyst-secrets", "optional": True}}]


def test_the_runtime_context_does_not_change_the_jobs_name() -> None:
    """The workload may appear after PostBuild (helm mode): a Job already created for
    the commit must still be the one found."""
    the_job = job("migrate", Trigger.PRE_DEPLOY)
    bare = render(plan(the_job), environment(), RenderOptions(trigger=Trigger.PRE_DEPLOY))
    runtime = runtime_context(APP, "app", URL)
    full = render(
        plan(the_job), environment(), RenderOptions(trigger=Trigger.PRE_DEPLOY, runtime=runtime)
    )
    assert bare.jobs[0].name == full.jobs[0].name


@pytest.mark.parametrize(
    ("image", "runtime_context_field", "gets_it"),
    [(None, None, True), ("tools:1", None, False), ("tools:1", True, True), (None, False, False)],
)
def test_only_jobs_in_the_build_image_get_it_unless_they_say_otherwise(
    image: str | None, runtime_context_field: bool | None, gets_it: bool
) -> None:
    runtime = runtime_context(APP, "app", URL)
    options = RenderOptions(trigger=Trigger.PRE_DEPLOY, images={"*": "app:1"}, runtime=runtime)
    the_job = job("migrate", Trigger.PRE_DEPLOY, image=image, runtime_context=runtime_context_field)
    got = container(options, the_job)
    assert ("envFrom" in got) is gets_it
    names = [e["name"] for e in got.get("env") or []]
    assert ("DEVJOBS_ENVIRONMENT_URL" in names) is gets_it


def test_a_jobs_own_env_from_is_rendered_as_kubernetes_envfrom_and_is_part_of_its_spec() -> None:
    own = EnvFromSource(secret_ref=NameRef(name="migrations"), prefix="MIG_")
    options = RenderOptions(trigger=Trigger.PRE_DEPLOY)
    with_own = render(plan(job("migrate", Trigger.PRE_DEPLOY, image="t:1", env_from=[own])),
                      environment(), options)  # fmt: skip
    without = render(plan(job("migrate", Trigger.PRE_DEPLOY, image="t:1")), environment(), options)
    spec = with_own.jobs[0].manifest["spec"]["template"]["spec"]["containers"][0]
    assert spec["envFrom"] == [{"secretRef": {"name": "migrations"}, "prefix": "MIG_"}]
    assert with_own.jobs[0].name != without.jobs[0].name  # what the user wrote is the job


def test_no_workload_yet_means_only_the_url() -> None:
    assert runtime_context(None, "app", URL) == RuntimeContext(url=URL)
    assert runtime_context(APP, "web", "") == RuntimeContext()


def test_env_from_is_read_strictly_with_its_place() -> None:
    spec = JobSpec.read(
        {"name": "m", "envFrom": [{"secretRef": {"name": "s"}}, {"configMapRef": {"name": "c"},
                                                                "prefix": "C_"}],
         "runtimeContext": False},
    )  # fmt: skip
    assert spec.runtime_context is False
    assert spec.env_from == [
        EnvFromSource(secret_ref=NameRef(name="s")),
        EnvFromSource(config_map_ref=NameRef(name="c"), prefix="C_"),
    ]
    for bad, where, what in [
        ([{}], ("envFrom", 0), "exactly one of secretRef, configMapRef"),
        ([{"secretRef": {"name": "s"}, "configMapRef": {"name": "c"}}], ("envFrom", 0),
         "exactly one"),
        ([{"secretRef": {}}], ("envFrom", 0, "secretRef", "name"), "required"),
        ([{"secretRef": {"name": "s", "key": "k"}}], ("envFrom", 0, "secretRef", "key"),
         "unknown field"),
        ([{"secretRef": {"name": "s"}, "prefix": "bad-"}], ("envFrom", 0, "prefix"), "prefix"),
    ]:  # fmt: skip
        with pytest.raises(InvalidField) as error:
            JobSpec.read({"name": "m", "envFrom": bad})
        assert error.value.path == where, bad
        assert what in error.value.message


def test_secret_values_are_masked_longest_first_and_short_ones_left() -> None:
    text = "url=postgres://u:hunter2@db/app pw=hunter2 flag=on\n"
    got = mask(text, ["postgres://u:hunter2@db/app", "hunter2", "on"])
    assert got == f"url={MASK} pw={MASK} flag=on\n"
    # A multi-line value is masked whole, and each of its lines where it is printed apart.
    assert mask("line one\nline two\n", ["line one\nline two"]) == f"{MASK}\n"
    assert mask("got: line two.", ["line one\nline two"]) == f"got: {MASK}."


def test_every_secret_a_pod_references_is_found() -> None:
    pod = {
        "spec": {
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "a"}}]}],
            "containers": [
                {
                    "name": "c",
                    "envFrom": [{"configMapRef": {"name": "not-a-secret"}}],
                    "env": [
                        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "b", "key": "k"}}},
                        {"name": "L", "valueFrom": {"secretKeyRef": {"name": "b", "key": "l"}}},
                        {"name": "V", "value": "plain"},
                    ],
                }
            ],
        }
    }
    assert secret_references(pod) == {"a": None, "b": {"k", "l"}}


def test_an_env_from_entry_naming_neither_source_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="exactly one of secretRef, configMapRef"):
        EnvFromSource()
