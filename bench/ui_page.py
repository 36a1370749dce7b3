"""The Jobs view under load: the Environment page's server time against the Kubernetes
list calls it needs, log latency from a pod to the browser, and 100 followers of one log.

    PYTHONPATH=. .venv/bin/python bench/ui_page.py [--tier 1|2|all] [--runs 30]

Tier 1 (control plane only, no node): one Environment with 50 jobs x 10 commits = 500
Jobs, rendered by `devjobs.kube.render` as the controller renders them (labels,
annotations, owner reference), the 500 pods the Job controller makes for them (Pending:
there is no node) and 50 log-tail ConfigMaps made by `logstore.log_configmap`. The UI
runs in local mode on a thread with the plan given directly (as `tests/ui_browser.py`
does). Warm, after its reflectors synced and the plan was resolved, each run times in
turn: the reference, i.e. the calls the page depends on done directly with a
`devjobs.kube.client.Kube` (GET the Environment, list Jobs and pods with the managed-by
selector and ConfigMaps with the log-tail selector, one after the other, JSON decoded);
`GET /environments/<ns>/<name>` (HTML) and `GET /api/v1/environments/<ns>/<name>` (JSON)
over HTTP on loopback (keep-alive); and the same two in-process through the ASGI app (no
socket). Prints medians and the ratios page / reference (goal <= 1.5).

Tier 2 (control plane + node): a devjobs Job whose pod prints `tick <uptime>` every 100 ms
(`/proc/uptime`, the host's CLOCK_BOOTTIME in 10 ms steps, so lines are compared with the
same clock). One follower reads the job's log through the UI's `text/event-stream` log
API, and, at the same time, one reads it straight from the API server (`Kube.log_lines`,
the reference); latency = arrival - printed time, median and p95 (goal < 1 s). Then a
child process opens 100 concurrent followers of the same log through the UI; the bench
reports the followers the UI's `LogHub` holds, the log requests the UI made to the API
server (counted by a `Kube` wrapper and by `LogHub.upstreams`), the latency the 100 saw,
and the resident memory of the process serving the UI (this one; the followers are in
the child) before, while and after they were connected.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devjobs.kube.client import Kube, collection_path, connect
from devjobs.kube.logstore import log_configmap
from devjobs.kube.podspec import RenderOptions
from devjobs.kube.render import render
from devjobs.kube.vocabulary import LOG_SELECTOR, MANAGED_SELECTOR
from devjobs.resolver.environment import from_object
from devjobs.resolver.models import JobPlan, Trigger
from devjobs.ui.serve import Running
from tests import catalyst
from tests.catalyst import job_config, job_plan, wait

REPOSITORY = "https://github.com/acme/shop"
ENV = "pr-1"
TICK = 'while true; do read up rest < /proc/uptime; echo "tick $up"; sleep 0.1; done'


# --- helpers ----------------------------------------------------------------------------


@dataclass
class CountingKube(Kube):
    """The UI's client, counting its requests by method and kind of path."""

    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        query = kwargs.get("query", args[0] if args else None) or {}
        last = path.rstrip("/").rsplit("/", 1)[-1]
        kind = "log" if last == "log" else last
        if query.get("watch"):
            kind = f"watch {kind}"
        with self.lock:
            self.calls[f"{method} {kind}"] += 1
        return super().request(method, path, *args, **kwargs)

    def count(self, wanted: Callable[[str], bool]) -> int:
        with self.lock:
            return sum(n for key, n in self.calls.items() if wanted(key))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def uptime() -> float:
    """The clock the pod's `/proc/uptime` shows."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def namespace(kube: Kube, name: str) -> None:
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    wait("the default ServiceAccount", lambda: kube.get(
        f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60)  # fmt: skip


def environment(kube: Kube, ns: str, plan: JobPlan, commit: str) -> dict[str, Any]:
    """The Project and the Environment at `commit`, as the API server stored it."""
    project = catalyst.project({"app": REPOSITORY}, namespace=ns)
    kube.request("POST", f"/apis/{catalyst.API_VERSION}/namespaces/{ns}/projects", body=project)
    return catalyst.create_environment(kube, ENV, ns, {"app": commit})


def create_jobs(kube: Kube, plan: JobPlan, env: dict[str, Any], commit: str) -> int:
    """The plan's PostBuild Jobs of the Environment at `commit`, as devjobs renders them."""
    at = copy.deepcopy(env)
    at["spec"]["sources"][0]["commitSha"] = commit
    rendered = render(plan, from_object(at), RenderOptions(trigger=Trigger.POST_BUILD,
                                                           workspace="empty"))  # fmt: skip
    ns = env["metadata"]["namespace"]
    for job in rendered.jobs:
        kube.request("POST", collection_path("batch/v1", "Job", ns), body=job.manifest)
    return len(rendered.jobs)


def sse(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) of a `text/event-stream` body."""
    event, data = "message", list[str]()
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def tick_time(text: str) -> float | None:
    parts = text.split()
    if len(parts) == 2 and parts[0] == "tick":
        try:
            return float(parts[1])
        except ValueError:
            return None
    return None


# --- tier 1 -----------------------------------------------------------------------------


def tier1(api: Any, args: argparse.Namespace) -> None:
    kube = connect(Path(api.kubeconfig))
    ns = "bench-page"
    namespace(kube, ns)
    plan = job_plan({"app": REPOSITORY}, *[
        job_config(f"job-{i:02d}", Trigger.POST_BUILD, "app", f"echo job {i}",
                   catalyst.TEST_IMAGE, "/w")
        for i in range(args.jobs)
    ])  # fmt: skip
    commits = [f"{i:04x}" + "c0de" * 9 for i in range(args.commits)]
    env = environment(kube, ns, plan, commits[-1])
    t = time.monotonic()
    jobs = sum(create_jobs(kube, plan, env, commit) for commit in commits)
    for job in plan.jobs:
        tail = "\n".join(f"{job.name}: line {n} of its output" for n in range(40))
        cm = log_configmap(ns, env, job.key, {job.name: tail})
        kube.request("POST", collection_path("v1", "ConfigMap", ns), body=cm)
    print(f"tier 1: {jobs} Jobs ({args.jobs} jobs x {args.commits} commits) and "
          f"{len(plan.jobs)} log-tail ConfigMaps created in {time.monotonic() - t:.1f}s",
          flush=True)  # fmt: skip

    jobs_path = collection_path("batch/v1", "Job", ns)
    pods_path = collection_path("v1", "Pod", ns)
    cms_path = collection_path("v1", "ConfigMap", ns)

    def settled() -> bool:
        pods = kube.list(pods_path, MANAGED_SELECTOR)["items"]
        listed = kube.list(jobs_path, MANAGED_SELECTOR)["items"]
        active = sum((j.get("status") or {}).get("active") or 0 for j in listed)
        return len(pods) >= jobs and active >= jobs

    wait("a pod of every Job (the Job controller)", settled, 600)
    time.sleep(3)
    print(f"tier 1: the Job controller made {jobs} pods (Pending: no node) in "
          f"{time.monotonic() - t:.1f}s", flush=True)  # fmt: skip

    rss_before = rss_mib()
    ui_kube = CountingKube(connect(Path(api.kubeconfig)).api_client)
    ui = Running(ui_kube, "local", "127.0.0.1", 0, (ns,), lambda p, e, c: plan, None).start()
    try:
        token = ui.settings.start_token.value
        page_path = f"/environments/{ns}/{ENV}"
        api_path = f"/api/v1/environments/{ns}/{ENV}"
        with httpx.Client(base_url=ui.base_url, timeout=60) as client:
            assert client.get(ui.url).status_code == 303  # the start token -> a cookie

            def ready() -> bool:
                data = client.get(api_path).json()
                return bool(
                    data["environment"]["planError"] == ""
                    and len(data["jobs"]) == args.jobs
                    and all(len(r["earlierRuns"]) == args.commits - 1 for r in data["jobs"])
                    and sum(len(r.items()) for r in ui.store.pods) >= jobs
                )

            wait("the UI's reflectors and plan", ready, 120)
            data = client.get(api_path).json()
            states = Counter(r["state"] for r in data["jobs"])
            page = client.get(page_path)
            assert page.status_code == 200, page.status_code
            api_json = client.get(api_path)
            print(f"tier 1: the page shows {len(data['jobs'])} jobs ({dict(states)}), "
                  f"{sum(len(r['earlierRuns']) for r in data['jobs'])} earlier runs; "
                  f"HTML {len(page.content):,} bytes, JSON {len(api_json.content):,} bytes",
                  flush=True)  # fmt: skip
            for _ in range(3):  # warm both paths
                client.get(page_path)
                client.get(api_path)
            measure_tier1(args, kube, ui, ui_kube, client, token, ns, page_path,
                          api_path, (jobs_path, pods_path, cms_path), rss_before)  # fmt: skip
    finally:
        ui.close()
    if args.tier == "all":  # tier 2's node would run these 500 pods: they go first
        kube.request("DELETE", f"/api/v1/namespaces/{ns}")
        wait("tier 1's pods deleted", lambda: not kube.list(pods_path)["items"], 300)


def measure_tier1(
    args: argparse.Namespace, kube: Kube, ui: Running, ui_kube: CountingKube,
    client: httpx.Client, token: str, ns: str, page_path: str, api_path: str,
    paths: tuple[str, str, str], rss_before: float,
) -> None:  # fmt: skip
    jobs_path, pods_path, cms_path = paths
    env_path = catalyst.environments_path(ns, ENV)
    loop = asyncio.new_event_loop()
    inproc = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ui.app), base_url=ui.base_url,
        headers={"Authorization": f"Bearer {token}"}, timeout=60,
    )  # fmt: skip
    names = (
        "reference",
        "get Environment",
        "list Jobs",
        "list pods",
        "list ConfigMaps",
        "access reviews",
        "page HTTP",
        "API HTTP",
        "page in-process",
        "API in-process",
    )
    times: dict[str, list[float]] = {k: [] for k in names}
    sizes: dict[str, int] = {}
    ssar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview"}
    requests_per_page: list[int] = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        parts: list[tuple[str, Callable[[], Any]]] = [
            ("get Environment", lambda: kube.get(env_path)),
            ("list Jobs", lambda: kube.list(jobs_path, MANAGED_SELECTOR)),
            ("list pods", lambda: kube.list(pods_path, MANAGED_SELECTOR)),
            ("list ConfigMaps", lambda: kube.list(cms_path, LOG_SELECTOR)),
        ]
        for name, call in parts:
            t = time.perf_counter()
            got = call()
            times[name].append(time.perf_counter() - t)
            sizes[name] = len((got or {}).get("items") or [got])
        times["reference"].append(time.perf_counter() - t0)
        t = time.perf_counter()
        for verb in ("get", "patch"):  # what the page asks besides the lists (SSARs)
            attrs = {"namespace": ns, "verb": verb,
                     "group": catalyst.GROUP, "resource": "environments"}  # fmt: skip
            kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                         body={**ssar, "spec": {"resourceAttributes": attrs}})  # fmt: skip
        times["access reviews"].append(time.perf_counter() - t)
        for name, path in (("page", page_path), ("API", api_path)):
            before = ui_kube.count(lambda k: not k.startswith("GET watch"))
            t = time.perf_counter()
            answer = client.get(path)
            times[f"{name} HTTP"].append(time.perf_counter() - t)
            assert answer.status_code == 200, (path, answer.status_code)
            requests_per_page.append(ui_kube.count(lambda k: not k.startswith("GET watch"))
                                     - before)  # fmt: skip
            t = time.perf_counter()
            answer = loop.run_until_complete(inproc.get(path))
            times[f"{name} in-process"].append(time.perf_counter() - t)
            assert answer.status_code == 200, (path, answer.status_code)
    loop.run_until_complete(inproc.aclose())
    loop.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\ntier 1, median of {args.runs} warm runs (alternating):")
    print(f"  reference: the list calls, one after the other      {ms(med['reference'])}")
    for name in ("get Environment", "list Jobs", "list pods", "list ConfigMaps"):
        print(f"    {name:<16} {sizes[name]:>4} objects                    {ms(med[name])}")
    print(f"  (the 2 SelfSubjectAccessReviews the page also asks   {ms(med['access reviews'])})")
    ref = med["reference"]
    for name in ("page HTTP", "API HTTP", "page in-process", "API in-process"):
        print(f"  {name:<18} {ms(med[name]):>10}   ratio {med[name] / ref:.2f}"
              f"   (with the reviews in the reference: "
              f"{med[name] / (ref + med['access reviews']):.2f})")  # fmt: skip
    print(f"  API requests the UI made per page request: {sorted(set(requests_per_page))} "
          f"(its calls so far: {dict(ui_kube.calls)})")  # fmt: skip
    print(
        f"  goal <= 1.5: page {'met' if med['page HTTP'] / ref <= 1.5 else 'NOT met'}, "
        f"API {'met' if med['API HTTP'] / ref <= 1.5 else 'NOT met'} (HTTP figures)"
    )
    print(f"  process RSS: {rss_before:.0f} MiB before the UI, {rss_mib():.0f} MiB after "
          f"(reflectors hold {sum(len(r.items()) for r in ui.store.reflectors())} objects)",
          flush=True)  # fmt: skip


# --- tier 2 -----------------------------------------------------------------------------


def tier2(api: Any, node: Any, args: argparse.Namespace) -> None:
    kube = connect(Path(api.kubeconfig))
    ns = "bench-logs"
    namespace(kube, ns)
    plan = job_plan(
        {"app": REPOSITORY},
        job_config("ticker", Trigger.POST_BUILD, "app", TICK, node.test_image, "/w"),
    )
    commit = "71c4" + "c0de" * 9
    env = environment(kube, ns, plan, commit)
    create_jobs(kube, plan, env, commit)
    ui_kube = CountingKube(connect(Path(api.kubeconfig)).api_client)
    ui = Running(ui_kube, "local", "127.0.0.1", 0, (ns,), lambda p, e, c: plan, None).start()
    try:
        token = ui.settings.start_token.value
        headers = {"Authorization": f"Bearer {token}"}
        job_path = f"/api/v1/environments/{ns}/{ENV}/jobs/app/ticker"
        log_path = f"{job_path}/log"

        def running() -> dict[str, Any] | None:
            detail = httpx.get(ui.base_url + job_path, headers=headers).json()
            ok = detail.get("state") == "Running" and detail.get("pod")
            return detail if ok else None

        detail = wait("the ticker's pod running", running, 180)
        pod = str(detail["pod"])
        print(f"\ntier 2: pod {pod} running; log requests by the UI so far: "
              f"{ui_kube.count(lambda k: k.endswith(' log'))}", flush=True)  # fmt: skip

        # One follower through the UI and, at the same time, one straight from the API server.
        direct: list[float] = []
        stop = threading.Event()

        def follow_direct() -> None:
            since = uptime()
            for line in connect(Path(api.kubeconfig)).log_lines(ns, pod, "ticker", follow=True):
                now, printed = uptime(), tick_time(line)
                if printed is not None and printed >= since:
                    direct.append(now - printed)
                if stop.is_set():
                    return

        reader = threading.Thread(target=follow_direct, daemon=True)
        reader.start()
        through_ui: list[float] = []
        since = uptime()
        deadline = time.monotonic() + args.follow_seconds
        stream_headers = {**headers, "Accept": "text/event-stream"}
        with httpx.stream("GET", ui.base_url + log_path, headers=stream_headers,
                          timeout=60) as answer:  # fmt: skip
            assert answer.status_code == 200, answer.status_code
            for event, data in sse(answer):
                if event == "line":
                    now, printed = uptime(), tick_time(json.loads(data)[1])
                    if printed is not None and printed >= since:
                        through_ui.append(now - printed)
                if time.monotonic() > deadline:
                    break
        stop.set()
        for name, values in (("through the UI (SSE)", through_ui),
                             ("reference: from the API server", direct)):  # fmt: skip
            print(f"  latency {name:<31} median {ms(statistics.median(values))}, "
                  f"p95 {ms(pct(values, 0.95))}, max {ms(max(values))} "
                  f"over {len(values)} lines", flush=True)  # fmt: skip
        verdict = "met" if pct(through_ui, 0.95) < 1.0 else "NOT met"
        print(f"  goal < 1 s: {verdict} (p95); printed times are /proc/uptime, in 10 ms steps")
        fan_out(ui, ui_kube, token, log_path, args)
    finally:
        ui.close()


def fan_out(
    ui: Running, ui_kube: CountingKube, token: str, log_path: str, args: argparse.Namespace
) -> None:
    time.sleep(2)  # the single follower's connection closes
    logs_before = ui_kube.count(lambda k: k.endswith(" log"))
    print(f"  before the followers: lines the UI read from the pod: {topic_lines(ui)}", flush=True)
    upstreams_before = ui.hub.upstreams
    rss_before = rss_mib()
    out = Path(tempfile.mkdtemp(prefix="devjobs-bench-followers-")) / "result.json"
    child = subprocess.Popen(
        [sys.executable, __file__, "--followers-child", ui.base_url + log_path, token,
         str(args.followers), str(args.follow_seconds), str(out)],
    )  # fmt: skip
    held, rss_peak, t = 0, rss_before, time.monotonic()
    reached = None
    while child.poll() is None:
        n = ui.hub.followers()
        if n > held:
            held = n
        if reached is None and n >= args.followers:
            reached = time.monotonic() - t
        rss_peak = max(rss_peak, rss_mib())
        time.sleep(0.2)
    result = json.loads(out.read_text())
    out.unlink()
    out.parent.rmdir()
    time.sleep(2)
    lat = result["latencies"] or [float("nan")]
    print(f"\ntier 2: {args.followers} concurrent followers of the same log (a child process, "
          f"{args.follow_seconds:.0f}s)")  # fmt: skip
    print(f"  LogHub followers held at most: {held} (all {args.followers} after "
          f"{reached if reached is None else round(reached, 1)}s); streams answered 200: "
          f"{result['connected']}")  # fmt: skip
    print(f"  log requests the UI made to the API server: {logs_before} before, "
          f"{ui_kube.count(lambda k: k.endswith(' log'))} after "
          f"(LogHub.upstreams {upstreams_before} -> {ui.hub.upstreams})")  # fmt: skip
    print(f"  events the followers got: {result['events']}; errors: {result['errors']}; "
          f"lines the UI read from the pod: {topic_lines(ui)}")  # fmt: skip
    print(f"  live lines per follower: min {min(result['lines'])}, median "
          f"{statistics.median(result['lines'])}, max {max(result['lines'])}")  # fmt: skip
    print(f"  latency under {args.followers} followers: median {ms(statistics.median(lat))}, "
          f"p95 {ms(pct(lat, 0.95))}, max {ms(max(lat))} over {len(lat)} lines")  # fmt: skip
    print(f"  RSS of the UI's process: {rss_before:.0f} MiB before, {rss_peak:.0f} MiB "
          f"at most while they were connected, {rss_mib():.0f} MiB after they left "
          f"(LogHub followers now {ui.hub.followers()})")  # fmt: skip
    print(f"  the UI's API calls during the whole tier: {dict(ui_kube.calls)}", flush=True)


def topic_lines(ui: Running) -> dict[str, int]:
    """Diagnostics: how many lines each of the hub's topics holds (a private field)."""
    with ui.hub._lock:
        return {"/".join(k[1:]): len(t.lines) for k, t in ui.hub._topics.items()}


def followers_child(url: str, token: str, count: int, seconds: float, out: Path) -> None:
    """`count` concurrent followers of `url`; writes their figures to `out` (JSON)."""
    lines = [0] * count
    latencies: list[float] = []
    events: Counter[str] = Counter()
    errors: list[str] = []
    connected = 0

    async def follow(i: int, client: httpx.AsyncClient, since: float) -> None:
        nonlocal connected
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        try:
            async with client.stream("GET", url, headers=headers) as answer:
                if answer.status_code != 200:
                    errors.append(f"HTTP {answer.status_code}")
                    return
                connected += 1
                event = ""
                async for line in answer.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                        events[event] += 1
                    elif line.startswith("data:") and event == "line":
                        now, printed = uptime(), tick_time(json.loads(line[5:])[1])
                        if printed is not None and printed >= since:
                            lines[i] += 1
                            latencies.append(now - printed)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            errors.append(repr(error))

    async def main() -> None:
        limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60)) as client:
            since = uptime()
            tasks = [asyncio.create_task(follow(i, client, since)) for i in range(count)]
            await asyncio.sleep(seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    out.write_text(json.dumps({"connected": connected, "lines": lines, "latencies": latencies,
                      "events": events, "errors": errors[:5]}))  # fmt: skip


# --- main -------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--followers-child":
        url, token, count, seconds, out = sys.argv[2:]
        followers_child(url, token, int(count), float(seconds), Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=("1", "2", "all"), default="all")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--followers", type=int, default=100)
    parser.add_argument("--follow-seconds", type=float, default=20.0)
    args = parser.parse_args()

    from tests.cluster import binaries, crds
    from tests.cluster.controlplane import ControlPlane
    from tests.cluster.node import Node

    bins = binaries.find(build=False)
    with tempfile.TemporaryDirectory(prefix="devjobs-bench-ui-") as d:
        cp = ControlPlane(bins, Path(d) / "cp")
        api = cp.start()
        node = None
        try:
            with api.client() as client:
                crds.install(client, crds.catalyst_crd_files())
                crds.install(client, crds.project_crd_files())
            if args.tier in ("1", "all"):
                tier1(api, args)
            if args.tier in ("2", "all"):
                node = Node(bins, api, Path(d) / "node").start()
                tier2(api, node, args)
        finally:
            if node is not None:
                node.stop()
            cp.stop()


if __name__ == "__main__":
    main()
