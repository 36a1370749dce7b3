"""Plans and Environments the render and cluster-run tests build from the models."""

from __future__ import annotations

from typing import Any

from devjobs.resolver import environment as envmod
from devjobs.resolver.models import JobConfig, JobPlan, RunAs, SourceInfo, Trigger

SHA = "0123456789abcdef0123456789abcdef01234567"


def environment_dict(
    namespace: str = "env-pr-12", name: str = "pr-12", uid: str = "uid-1", sha: str = SHA
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "generation": 3}
    if uid:
        metadata["uid"] = uid
    return {
        "apiVersion": "catalyst.catalyst.dev/v1alpha1",
        "kind": "Environment",
        "metadata": metadata,
        "spec": {
            "projectRef": {"name": "shop"},
            "type": "development",
            "deploymentMode": "development",
            "sources": [{"name": "web", "branch": "feature/x", "commitSha": sha}],
        },
    }


def environment(**kwargs: Any) -> envmod.Environment:
    return envmod.from_object(environment_dict(**kwargs))


def job(name: str, trigger: Trigger = Trigger.POST_DEPLOY, **kwargs: Any) -> JobConfig:
    fields: dict[str, Any] = {
        "name": name,
        "source": "web",
        "trigger": trigger,
        "working_dir": "/workspaces/web",
    }
    if "parallel" not in kwargs:
        fields["command"] = ["sh", "-c", f"echo {name}"]
    fields.update(kwargs)
    return JobConfig(**fields)


def plan(*jobs: JobConfig, repository: str | None = "https://git.example/shop/web.git") -> JobPlan:
    return JobPlan(
        sources=[SourceInfo(name="web", repository_url=repository, commit_sha=SHA)],
        jobs=list(jobs),
    )


def standard_plan(repository: str | None = "https://git.example/shop/web.git") -> JobPlan:
    return plan(
        job("post-create", Trigger.POST_BUILD, command=["sh", "-c", "echo setup"]),
        job("test", setup=["post-create"], env={"CI": "true"}, timeout_seconds=600),
        job("lint", parallel={"ruff": ["ruff", "check"], "mypy": ["mypy", "."]}),
        job("migrate", Trigger.PRE_DEPLOY, run_as=RunAs.INIT_CONTAINER, setup=["post-create"]),
        job("smoke", Trigger.PRE_DEPLOY, retries=2),
        job("seed", Trigger.MANUAL),
        repository=repository,
    )
