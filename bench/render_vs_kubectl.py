"""Render 1,000 jobs and compare with `kubectl create --dry-run=client` of the same objects.

    .venv/bin/python bench/render_vs_kubectl.py [--jobs 1000] [--repeat 5]

Prints the median time of devjobs' pure `render()` (plan -> dicts), of render plus YAML
serialisation (what `devjobs render -o yaml` prints), and of kubectl reading that YAML
with `create --dry-run=client -o name`, and their ratios. kubectl needs discovery, so a
control plane is started (the test cluster's, or DEVJOBS_TEST_KUBECONFIG).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devjobs.cli.render import format_objects  # noqa: E402
from devjobs.kube.podspec import RenderOptions  # noqa: E402
from devjobs.kube.render import render  # noqa: E402
from devjobs.resolver import environment as envmod  # noqa: E402
from devjobs.resolver.models import JobConfig, JobPlan, SourceInfo, Trigger  # noqa: E402


def make_plan(count: int) -> JobPlan:
    jobs = [
        JobConfig(
            name=f"job-{i}",
            source="web",
            trigger=Trigger.POST_DEPLOY,
            command=["sh", "-c", f"echo {i} && make test-{i}"],
            working_dir="/workspaces/web",
            env={"CI": "true", "N": str(i)},
            timeout_seconds=600,
        )
        for i in range(count)
    ]
    source = SourceInfo(
        name="web", repository_url="https://git.example/shop/web.git", commit_sha="a" * 40
    )
    return JobPlan(sources=[source], jobs=jobs)


def environment() -> envmod.Environment:
    return envmod.from_object(
        {
            "apiVersion": "catalyst.catalyst.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": "pr-1", "namespace": "shop-pr-1", "uid": "u-1"},
            "spec": {
                "projectRef": {"name": "shop"},
                "type": "development",
                "sources": [{"name": "web", "commitSha": "a" * 40}],
            },
        }
    )


def median_time(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plan, env = make_plan(args.jobs), environment()
    options = RenderOptions(trigger=Trigger.POST_DEPLOY)
    t_render = median_time(lambda: render(plan, env, options), args.repeat)
    t_yaml = median_time(
        lambda: format_objects(render(plan, env, options).manifests(), "yaml"), args.repeat
    )
    t_json = median_time(
        lambda: format_objects(render(plan, env, options).manifests(), "json"), args.repeat
    )
    print(f"jobs: {args.jobs}")
    print(f"devjobs render (objects):      {t_render * 1000:8.1f} ms")
    print(f"devjobs render -o yaml:        {t_yaml * 1000:8.1f} ms")
    print(f"devjobs render -o json:        {t_json * 1000:8.1f} ms")

    import os

    from tests.cluster import binaries
    from tests.cluster.controlplane import ControlPlane, from_kubeconfig

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "jobs.json"
        manifest.write_text(format_objects(render(plan, env, options).manifests(), "json"))
        if external := os.environ.get("DEVJOBS_TEST_KUBECONFIG"):
            api, cp = from_kubeconfig(Path(external)), None
        else:
            cp = ControlPlane(binaries.find(), Path(tmp) / "cluster")
            api = cp.start()
        try:
            kubectl = str(binaries.find()["kubectl"])
            command = [
                kubectl,
                "--kubeconfig",
                str(api.kubeconfig),
                "create",
                "--dry-run=client",
                "-o",
                "name",
                "-f",
                str(manifest),
            ]
            subprocess.run(command, check=True, capture_output=True)  # warm discovery cache
            t_kubectl = median_time(
                lambda: subprocess.run(command, check=True, capture_output=True), args.repeat
            )
        finally:
            if cp is not None:
                cp.stop()
    print(f"kubectl create --dry-run=client: {t_kubectl * 1000:6.1f} ms")
    print(f"ratio kubectl / devjobs render -o json: {t_kubectl / t_json:.2f}")
    print(f"ratio kubectl / devjobs render (objects): {t_kubectl / t_render:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
