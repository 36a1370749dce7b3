"""Shared test setup, loaded for every test run:

- `tests.cluster.plugin`: a real Kubernetes control plane (and node, tier 2);
- `tests.gitserver`: real git servers (`git daemon`, smart HTTP) on loopback.
"""

pytest_plugins = ["tests.cluster.plugin", "tests.gitserver"]
