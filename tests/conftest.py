"""Shared test setup: the real-cluster plugin (tests/cluster) is loaded for every test run."""

pytest_plugins = ["tests.cluster.plugin"]
