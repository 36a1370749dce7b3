"""How long the test cluster takes to start: tier 1 (control plane) and, as root, tier 2.

    PYTHONPATH=. .venv/bin/python bench/cluster_start.py [--runs N] [--node]

Binaries must be built already (`bash tests/cluster/setup.sh`); prints one line per run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.cluster import binaries
from tests.cluster.controlplane import ControlPlane
from tests.cluster.node import Node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--node", action="store_true", help="also start a tier-2 node")
    args = parser.parse_args()
    bins = binaries.find(build=False)
    starts, nodes, stops = [], [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="devjobs-bench-") as d:
            cp = ControlPlane(bins, Path(d) / "cp")
            node = None
            try:
                api = cp.start()
                starts.append(cp.start_seconds)
                if args.node:
                    node = Node(bins, api, Path(d) / "node").start()
                    nodes.append(node.start_seconds)
            finally:
                t = time.monotonic()
                if node is not None:
                    node.stop()
                cp.stop()
                stops.append(time.monotonic() - t)
        line = f"run {i + 1}: control plane ready {starts[-1]:.2f}s"
        if nodes:
            line += f", node Ready {nodes[-1]:.2f}s"
        print(line + f", teardown {stops[-1]:.2f}s", flush=True)
    print(f"median control plane start {statistics.median(starts):.2f}s over {len(starts)} runs")
    if nodes:
        print(f"median node Ready {statistics.median(nodes):.2f}s")


if __name__ == "__main__":
    main()
