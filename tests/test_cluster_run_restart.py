"""`devjobs run` survives a kube-apiserver restart while it follows a job: its watches
resume and its log stream re-opens, so nothing is lost or printed twice."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import pytest

from devjobs.cli.run import run_on_cluster
from tests.catalyst import DEVCONTAINER
from tests.cluster.restart import restart_apiserver
from tests.test_cluster_run import env, environment_conditions, parse  # noqa: F401

pytestmark = pytest.mark.tier2


def test_an_api_server_restart_mid_run_loses_and_repeats_nothing(
    env: dict[str, Any],  # noqa: F811
) -> None:
    config = env["source"] / DEVCONTAINER
    text = config.read_text().replace(
        '"slow": "echo started slow; sleep 120"',
        '"slow": "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line-$i; sleep 1; done"',
    )
    config.write_text(text)
    out = io.StringIO()
    args = parse(
        str(env["project"]), "--source", f"web={env['source']}", "--environment", env["ref"],
        "--workspace", "empty", "slow",
    )  # fmt: skip
    result: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: result.update(code=run_on_cluster(args, kube=env["kube"], out=out))
    )
    thread.start()
    deadline = time.monotonic() + 60
    while "line-2" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "line-2" in out.getvalue(), out.getvalue()
    down = restart_apiserver(down_seconds=3.0)
    assert down >= 3.0
    thread.join(120)
    assert not thread.is_alive()
    text = out.getvalue()
    assert result["code"] == 0, text
    lines = [line for line in text.splitlines() if line.startswith("[slow] line-")]
    assert lines == [f"[slow] line-{i}" for i in range(1, 13)], text
    assert text.count("devjobs: web/slow Succeeded") == 1, text
    assert environment_conditions(env)["Job.web.slow"]["status"] == "True"
