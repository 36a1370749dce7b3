"""The controller with 200 Environments of 5 jobs each, on the tier-1 test cluster.

    PYTHONPATH=. .venv/bin/python bench/controller_200.py [--envs 200] [--idle 60]

Prints: time from the trigger to the 5 Jobs of an Environment existing (p50, p99, max),
API writes and requests during an idle minute with nothing changing, and the process's
resident memory (controller + the bench's own watch, so an upper bound).

The trigger here is the Environment leaving provisioning (`status.phase` Provisioning ->
Ready, written by the bench as Catalyst would) for a Project without builds: the tier-1
cluster has no node, so 200 build Jobs could not succeed; the path from the watch event to
the applied Jobs is the same one a succeeded build Job takes (tests/test_controller_cluster.py
covers that trigger on a real node). Leader election is off (its Lease renewals are
inherent: lease 15s, renew every 5s = 12 writes/min, counted apart from these figures).

Measured after the controller gained its workload-pod and log-tail ConfigMap informers,
init-container results, condition removal and GitHub/log reporting (same machine, same
hour, the commit before those changes in parentheses): p50 1.36s (1.56s), p99 2.42s
(2.84s); idle 60s: 0 writes, 0 requests, 0 reconciles (same); status writes 2173 (2187);
RSS 154 MiB (153 MiB). No node here: no pods ever run, so no log tails are kept.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from devjobs.controller.main import Config, Controller
from devjobs.kube.client import Kube
from devjobs.kube.reflector import Reflector
from devjobs.kube.vocabulary import MANAGED_SELECTOR
from tests import catalyst
from tests.cluster import binaries, crds
from tests.cluster.controlplane import ControlPlane
from tests.gitserver import GitDaemon, RepoRoot

NS = "bench"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="devjobs-bench-") as tmp:
        work = Path(tmp)
        cp = ControlPlane(binaries.find(build=False), work / "cp")
        api = cp.start()
        root = work / "served"
        root.mkdir()
        repos = RepoRoot(root)
        repo = repos.create("app")
        catalyst.write_devcontainer(repo.path, {"image": "devjobs.test/busybox:1"})
        sha = repo.commit("first")
        daemon = GitDaemon(root)
        stop = threading.Event()
        try:
            with api.client() as client:
                run(args, client, daemon.url("app"), sha, work, stop)
        finally:
            stop.set()
            daemon.stop()
            cp.stop()


def run(args: Any, client: Any, url: str, sha: str, work: Path, stop: threading.Event) -> None:
    from kubernetes import client as k

    crds.install(client, crds.catalyst_crd_files())
    crds.install(client, crds.project_crd_files())
    core: Any = k.CoreV1Api(client)
    custom: Any = k.CustomObjectsApi(client)
    core.create_namespace({"metadata": {"name": NS}})
    jobs = [
        {"name": f"job-{i}", "trigger": "PostBuild", "command": ["true"], "image": "busybox:1"}
        for i in range(args.jobs)
    ]
    project = catalyst.project({"app": url}, namespace=NS, jobs={"app": jobs})
    custom.create_namespaced_custom_object(
        "catalyst.catalyst.dev", "v1alpha1", NS, "projects", project
    )
    names = [f"pr-{i:03d}" for i in range(args.envs)]
    for name in names:
        env = catalyst.environment(name, NS, sources={"app": sha})
        custom.create_namespaced_custom_object(
            "catalyst.catalyst.dev", "v1alpha1", NS, "environments", env
        )
        set_phase(custom, name, "Provisioning")

    # The bench's own view of the Jobs: when each Environment has all of its Jobs.
    seen: dict[str, set[str]] = {}
    complete_at: dict[str, float] = {}
    lock = threading.Lock()

    def on_job(kind: str, old: Any, new: Any) -> None:
        if new is None:
            return
        env = new["metadata"]["labels"].get("devjobs.dev/environment", "")
        with lock:
            seen.setdefault(env, set()).add(new["metadata"]["name"])
            if len(seen[env]) >= args.jobs and env not in complete_at:
                complete_at[env] = time.monotonic()

    watcher_kube = Kube(client)
    jobs_path = f"/apis/batch/v1/namespaces/{NS}/jobs"
    watcher = Reflector(watcher_kube, jobs_path, label_selector=MANAGED_SELECTOR)
    watcher.add_listener(on_job)
    watcher.start(stop)

    rss_before = rss_mib()
    kube = Kube(client)
    config = Config(namespaces=(NS,), project_namespace=None, workers=args.workers,
                    cache_dir=work / "cache")  # fmt: skip
    controller = Controller(kube, config)
    ready = threading.Event()
    threading.Thread(target=controller.run, args=(stop, ready), daemon=True).start()
    ready.wait(120)
    t = time.monotonic()
    while controller.stats.counters.writes.get("status", 0) < args.envs:
        if time.monotonic() - t > 300:
            raise SystemExit(f"Waiting conditions not written: {controller.stats.counters.writes}")
        time.sleep(0.2)
    while len(controller.queue):
        time.sleep(0.2)
    print(f"{args.envs} Environments observed, Waiting conditions written "
          f"in {time.monotonic() - t:.1f}s", flush=True)  # fmt: skip

    triggered: dict[str, float] = {}
    for name in names:
        set_phase(custom, name, "Ready")
        triggered[name] = time.monotonic()
    deadline = time.monotonic() + 600
    while len(complete_at) < args.envs and time.monotonic() < deadline:
        time.sleep(0.2)
    latencies = sorted(complete_at[n] - triggered[n] for n in names if n in complete_at)
    if len(latencies) < args.envs:
        print(f"only {len(latencies)} of {args.envs} Environments got their Jobs in 600s")
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"trigger -> {args.jobs} Jobs exist: p50 {p50:.2f}s, p99 {p99:.2f}s, max "
          f"{latencies[-1]:.2f}s over {len(latencies)} Environments ({args.workers} workers)",
          flush=True)  # fmt: skip

    # Let the conditions settle (Jobs stay Pending: no node), then an idle minute.
    quiet_since = time.monotonic()
    last = controller.stats.counters.total
    while time.monotonic() - quiet_since < 10:
        time.sleep(1)
        if controller.stats.counters.total != last:
            last, quiet_since = controller.stats.counters.total, time.monotonic()
    writes0, requests0 = controller.stats.counters.total, kube.requests
    reconciles0 = controller.stats.reconciles
    time.sleep(args.idle)
    writes = controller.stats.counters.total - writes0
    print(f"idle {args.idle:.0f}s: {writes} API writes, {kube.requests - requests0} requests "
          f"(watches re-opened included), {controller.stats.reconciles - reconciles0} "
          f"reconciles; writes by kind so far: {controller.stats.counters.writes}")  # fmt: skip
    print(f"memory: RSS {rss_mib():.0f} MiB (before the controller: {rss_before:.0f} MiB; "
          f"{len(watcher.items())} Jobs, errors {controller.stats.errors})")  # fmt: skip


def set_phase(custom: Any, name: str, phase: str) -> None:
    env = custom.get_namespaced_custom_object(
        "catalyst.catalyst.dev", "v1alpha1", NS, "environments", name
    )
    status = env.get("status") or {}
    status["phase"] = phase
    env["status"] = status
    custom.replace_namespaced_custom_object_status(
        "catalyst.catalyst.dev", "v1alpha1", NS, "environments", name, env
    )


if __name__ == "__main__":
    main()
