"""What `devjobs run --local` costs over running the same commands by hand.

20 trivial jobs (`echo job N`), one lifecycle point, run one at a time:
- process backend vs `sh -c 'echo job N'` twenty times;
- docker backend vs `docker run --rm IMAGE sh -c 'echo job N'` twenty times, on a
  private engine started here (tests/docker), unless `--no-docker`.
Prints the median wall time of each (over --repeat runs) and the ratios. The devjobs
figure is the whole command: interpreter start, plan resolution, the run, the summary.

    .venv/bin/python bench/local_overhead.py [--jobs 20] [--repeat 5] [--no-docker]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.docker.engine import TEST_IMAGE, DockerEngine  # noqa: E402


def workspace(directory: Path, jobs: int, image: str | None) -> Path:
    tasks = {f"job-{n}": f"echo job {n}" for n in range(jobs)}
    config: dict[str, object] = {
        "tasks": tasks,
        "customizations": {"devjobs": {"triggers": dict.fromkeys(tasks, "PostBuild")}},
    }
    if image:
        config["image"] = image
    (directory / ".devcontainer").mkdir(parents=True)
    (directory / ".devcontainer" / "devcontainer.json").write_text(json.dumps(config))
    return directory


def timed(action: Callable[[], None], repeat: int) -> float:
    """Median seconds of `repeat` runs, after one warm-up run."""
    action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


RUN_SECONDS: list[float] = []
"""devjobs's own `durationSeconds` of each run: the jobs, without interpreter start-up
and plan resolution."""


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def run_devjobs(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [*argv, "-o", "json"], env=env, check=True, capture_output=True, text=True
    )
    RUN_SECONDS.append(json.loads(done.stdout)["durationSeconds"])


def compare(name: str, direct: float, devjobs: float, jobs: int) -> None:
    inner = statistics.median(RUN_SECONDS)
    RUN_SECONDS.clear()
    print(
        f"{name:<8} direct {direct:7.3f}s   devjobs {devjobs:7.3f}s   "
        f"ratio {devjobs / direct:5.2f}x   overhead {1000 * (devjobs - direct) / jobs:6.1f} ms/job"
        f"\n{'':<8} of which the run itself {inner:7.3f}s   "
        f"ratio {inner / direct:5.2f}x   overhead {1000 * (inner - direct) / jobs:6.1f} ms/job"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": "unix:///nonexistent.sock"}
    devjobs = [sys.executable, "-m", "devjobs", "run", "--local"]
    print(f"{args.jobs} trivial jobs, median of {args.repeat} runs")

    with tempfile.TemporaryDirectory() as scratch:
        app = workspace(Path(scratch) / "app", args.jobs, None)

        def direct_sh() -> None:
            for n in range(args.jobs):
                run(["sh", "-c", f"echo job {n}"], env, cwd=app)

        def devjobs_process() -> None:
            run_devjobs([*devjobs, "--source", f"app={app}", "--backend", "process"], env)

        compare("process", timed(direct_sh, args.repeat), timed(devjobs_process, args.repeat),
                args.jobs)  # fmt: skip

    if args.no_docker:
        return 0
    engine = DockerEngine()
    try:
        engine.start()
        engine.build_test_image()
        denv = {**env, "DOCKER_HOST": engine.host}
        with tempfile.TemporaryDirectory() as scratch:
            app = workspace(Path(scratch) / "app", args.jobs, TEST_IMAGE)

            def direct_docker() -> None:
                for n in range(args.jobs):
                    run(["docker", "run", "--rm", "-v", f"{app}:/workspaces/app",
                         "-w", "/workspaces/app", TEST_IMAGE, "sh", "-c", f"echo job {n}"],
                        denv)  # fmt: skip

            def devjobs_docker() -> None:
                run_devjobs([*devjobs, "--source", f"app={app}", "--backend", "docker"], denv)

            compare("docker", timed(direct_docker, args.repeat),
                    timed(devjobs_docker, args.repeat), args.jobs)  # fmt: skip
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
