"""pytest fixtures for tests that need a Docker engine (mark them `@pytest.mark.docker`).

Import them into a test module (`from tests.docker.fixtures import docker_engine`).
The engine is started by the test run itself; the tests are skipped only when
`DEVJOBS_DOCKER=0` is set, otherwise an engine that cannot start is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.docker.engine import DockerEngine

MANAGED_BY = "app.kubernetes.io/managed-by=devjobs"


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A running private engine with the test image `devjobs.test/busybox:1` imported."""
    if os.environ.get("DEVJOBS_DOCKER") == "0":
        pytest.skip("DEVJOBS_DOCKER=0: Docker engine tests disabled")
    engine = DockerEngine()
    try:
        engine.start()
        engine.build_test_image()
        yield engine
    finally:
        engine.stop()
    leftover = engine.mounts()
    assert not leftover, f"mounts left behind: {leftover}"


def devjobs_containers(engine: DockerEngine) -> list[str]:
    """Containers (running or not) that devjobs made, by their label."""
    done = engine.docker("ps", "-aq", "--filter", f"label={MANAGED_BY}")
    return done.stdout.split()
