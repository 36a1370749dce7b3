"""Time from `devjobs run` to all Jobs created, for 50 jobs, and the API requests made.

    .venv/bin/python bench/run_create_50.py [--jobs 50]

Starts the test control plane (or uses DEVJOBS_TEST_KUBECONFIG), installs the Catalyst
CRDs, creates an Environment, and runs `devjobs run --detach` (no following: the figure
is creation) on a local source with N Manual tasks named on the command line. Prints
the wall time, the requests devjobs made (its counted REST layer: reads, the dry-run
and the real server-side applies), and the time of a second, idempotent run.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()

    from devjobs.cli import build_parser
    from devjobs.cli.run import run_on_cluster
    from devjobs.kube.client import Kube
    from tests import catalyst
    from tests.catalyst import create_environment, write_devcontainer, write_project
    from tests.cluster import binaries, crds
    from tests.cluster.controlplane import ControlPlane, from_kubeconfig

    # The runner's modules, imported before the clock starts as they were before the
    # runner moved behind the CLI's request builder: the figures time the run.
    importlib.import_module("devjobs.runner.cluster.run")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if external := os.environ.get("DEVJOBS_TEST_KUBECONFIG"):
            api, cp = from_kubeconfig(Path(external)), None
        else:
            cp = ControlPlane(binaries.find(), tmp / "cluster")
            api = cp.start()
        try:
            client = api.client()
            crds.install(client, crds.catalyst_crd_files())
            kube = Kube(client)
            namespace = f"bench-{int(time.time())}"
            kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
            create_environment(kube, "pr-1", namespace, sources={"web": "a" * 40})
            source = tmp / "web"
            names = [f"job-{i}" for i in range(args.jobs)]
            config = {"image": "busybox:1", "tasks": {n: f"echo {n}" for n in names}}
            write_devcontainer(source, config)
            project = write_project(
                tmp / "project.json", catalyst.project({"web": "https://git.example/web.git"})
            )
            argv = ["run", str(project), *names, "--source", f"web={source}"]
            argv += ["--environment", f"{namespace}/pr-1", "--workspace", "empty", "--detach"]
            for label in ("first run", "second run (idempotent)"):
                run_args = build_parser().parse_args(argv)
                counted = Kube(client)
                start = time.perf_counter()
                code = run_on_cluster(run_args, kube=counted, out=io.StringIO())
                elapsed = time.perf_counter() - start
                created = len(kube.list(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"])
                print(
                    f"{label}: exit {code}, {created} Jobs in the namespace, "
                    f"{elapsed * 1000:.0f} ms, {counted.requests} API requests "
                    f"({counted.requests / args.jobs:.2f} per job)"
                )
        finally:
            if cp is not None:
                cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
