"""Wall time of `devjobs plan` against the reference reading the same devcontainer.json.

Ours:      devjobs plan --target local --source app=DIR -o json
Reference: devcontainer read-configuration --workspace-folder DIR --docker-path NOOP
           (@devcontainers/cli 0.89.0, installed with npm into ~/.cache/devjobs/bench/
           when missing; NOOP is a script that answers its `docker ps -q -a --filter ...`
           with no containers, so no Docker engine is involved.)

Each workspace is a corpus case copied outside any git repository (as the corpus
README asks), plus one synthetic 900 KB config and this repository's `examples/app`,
whose `customizations.devjobs.jobs` makes devjobs validate a job definition (with
pydantic: the one row that imports it). Runs alternate between the two tools;
the figure is the ratio of median wall times (goal: <= 1.0). A second table compares
the JSONC parser in-process with the `json5` package on the same files.

    .venv/bin/python bench/plan_vs_reference.py [--runs N]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("DEVJOBS_CORPUS", REPO.parent / "shared" / "corpus" / "devcontainer"))
CACHE = Path.home() / ".cache" / "devjobs" / "bench"
REFERENCE_VERSION = "0.89.0"
REFERENCE = CACHE / "node_modules" / "@devcontainers" / "cli" / "devcontainer.js"

CASES = [
    "cli__configs__image",  # image, remoteEnv with ${localEnv:...}
    "cli__configs__dockerfile-with-parallel-commands",  # Dockerfile, parallel commands
    "vscode__python-3-postgres",  # Docker Compose: the compose file is read for its image
    "vscode__dotnet",  # the largest corpus config, mostly comments
    "templates__universal",
]


def reference() -> list[str]:
    if not REFERENCE.is_file():
        print(f"installing @devcontainers/cli {REFERENCE_VERSION} into {CACHE}", file=sys.stderr)
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(CACHE),
                f"@devcontainers/cli@{REFERENCE_VERSION}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return ["node", str(REFERENCE)]


def ours(dev: bool) -> list[str]:
    """devjobs as users get it (`pip install .`: a wheel in a venv of its own, re-made
    when the sources change); with `--dev`, this interpreter's (editable) install, whose
    import hook costs every start a few more milliseconds."""
    if dev:
        script = Path(sys.executable).parent / "devjobs"
        return [str(script)] if script.is_file() else [sys.executable, "-m", "devjobs"]
    venv = CACHE / "venv"
    digest = hashlib.sha256()
    for path in sorted([REPO / "pyproject.toml", *(REPO / "devjobs").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    stamp = venv / "devjobs-sources.sha256"
    if not stamp.is_file() or stamp.read_text() != digest.hexdigest():
        print("installing devjobs from this tree into", venv, file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", str(REPO)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        stamp.write_text(digest.hexdigest())
    return [str(venv / "bin" / "devjobs")]


def copy_case(case: str, into: Path) -> Path:
    workspace = into / case
    shutil.copytree(CORPUS / "cases" / case, workspace)
    for path in workspace.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if b"@@CASE_DIR@@" in data:
                path.chmod(0o644)
                path.write_bytes(data.replace(b"@@CASE_DIR@@", str(workspace).encode()))
    return workspace


def example_app(into: Path) -> Path:
    """examples/app outside this git repository (devjobs would ask git for its origin)."""
    workspace = into / "examples__app"
    shutil.copytree(REPO / "examples" / "app", workspace)
    return workspace


def synthetic_big(into: Path) -> Path:
    """A 900 KB config: many commented settings, tasks, trailing commas."""
    workspace = into / "synthetic-900k"
    (workspace / ".devcontainer").mkdir(parents=True)
    settings = ",\n".join(
        f"    // setting {i}: what it does\n"
        f'    "ext{i}.option": {{"value": "v{i}", "n": [{i}, 2, 3,],}}'
        for i in range(9000)
    )
    tasks = ",\n".join(f'    "task-{i}": ["make", "t{i}"]' for i in range(200))
    text = (
        '{\n  "image": "python:3.12",\n  /* block comment */\n'
        '  "postCreateCommand": "pip install -e .",\n'
        f'  "tasks": {{\n{tasks},\n  }},\n'
        f'  "customizations": {{"vscode": {{"settings": {{\n{settings}\n  }}}}}},\n}}\n'
    )
    (workspace / ".devcontainer" / "devcontainer.json").write_text(text)
    return workspace


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def parser_table(workspaces: list[Path]) -> None:
    import json5

    from devjobs.resolver.jsonc import parse

    print("\nJSONC parser in-process (median of 20): devjobs.resolver.jsonc vs json5")
    print(f"{'config':52} {'bytes':>8} {'jsonc ms':>9} {'json5 ms':>9} {'ratio':>6}")
    for workspace in workspaces:
        config = next(workspace.glob(".devcontainer/devcontainer.json"), None) or (
            workspace / ".devcontainer.json"
        )
        text = config.read_text()
        timings = {}
        for name, function in (
            ("jsonc", functools.partial(parse, text, "f")),
            ("json5", functools.partial(json5.loads, text)),
        ):
            samples = []
            for _ in range(20 if len(text) < 100_000 else 3):
                start = time.perf_counter()
                function()
                samples.append(time.perf_counter() - start)
            timings[name] = statistics.median(samples) * 1000
        ratio = timings["jsonc"] / timings["json5"]
        print(
            f"{workspace.name:52} {len(text):>8} {timings['jsonc']:>9.3f} "
            f"{timings['json5']:>9.3f} {ratio:>6.3f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--dev", action="store_true", help="time this interpreter's devjobs (editable install)"
    )
    args = parser.parse_args()
    reference_command = reference()
    ours_command = ours(args.dev)
    with tempfile.TemporaryDirectory(prefix="devjobs-bench-") as directory:
        root = Path(directory)
        noop = root / "docker"
        noop.write_text("#!/bin/sh\n# `docker ps -q -a --filter ...`: no containers.\nexit 0\n")
        noop.chmod(0o755)
        workspaces = [copy_case(case, root / "ws") for case in CASES]
        workspaces.append(synthetic_big(root / "ws"))
        workspaces.append(example_app(root / "ws"))
        print(f"devjobs: {' '.join(ours_command)} plan --target local --source app=DIR -o json")
        print(f"reference: node devcontainer.js read-configuration ({REFERENCE_VERSION})")
        print(f"{args.runs} runs each, alternating; median wall time\n")
        print(f"{'workspace':52} {'devjobs s':>10} {'reference s':>12} {'ratio':>6}")
        ratios = []
        for workspace in workspaces:
            mine = [
                *ours_command,
                "plan",
                "--target",
                "local",
                "--source",
                f"app={workspace}",
                "-o",
                "json",
            ]
            theirs = [
                *reference_command,
                "read-configuration",
                "--workspace-folder",
                str(workspace),
                "--docker-path",
                str(noop),
            ]
            json.loads(subprocess.run(mine, check=True, capture_output=True).stdout)
            json.loads(subprocess.run(theirs, check=True, capture_output=True).stdout)
            ours_times, reference_times = [], []
            for _ in range(args.runs):
                ours_times.append(wall(mine))
                reference_times.append(wall(theirs))
            ratio = statistics.median(ours_times) / statistics.median(reference_times)
            ratios.append(ratio)
            print(
                f"{workspace.name:52} {statistics.median(ours_times):>10.3f} "
                f"{statistics.median(reference_times):>12.3f} {ratio:>6.2f}"
            )
        print(
            f"\nmedian ratio {statistics.median(ratios):.2f}, worst {max(ratios):.2f} (goal <= 1.0)"
        )
        parser_table(workspaces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
