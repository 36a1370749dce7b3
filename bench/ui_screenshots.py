"""Screenshots of the Jobs view's pages, made from the real pages on the tier-2 test
cluster (control plane + node started here, the controller and the UI on threads):

    PYTHONPATH=. .venv/bin/python bench/ui_screenshots.py [--out ui-screenshots]

Writes index.png (Environments), jobs-tab.png (the Jobs tab) and job-log.png (a failed
job's log page) for the README.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from devjobs.kube.client import connect
from devjobs.resolver.models import Trigger
from tests.catalyst import Catalyst, job_config, job_plan, wait
from tests.cluster import binaries, crds
from tests.cluster.controlplane import ControlPlane
from tests.cluster.node import Node
from tests.ui_browser import chromium, controller, ui_server

SHA = "5eed" + "c0de" * 9
REPOSITORY = "https://github.com/acme/shop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("ui-screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bins = binaries.find(build=False)
    with tempfile.TemporaryDirectory(prefix="devjobs-shots-") as d:
        cp = ControlPlane(bins, Path(d) / "cp")
        api = cp.start()
        node = Node(bins, api, Path(d) / "node").start()
        try:
            with api.client() as client:
                crds.install(client, crds.catalyst_crd_files())
                crds.install(client, crds.project_crd_files())
                kube = connect(Path(api.kubeconfig))
                ns = "team-shop"
                kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
                wait("the default ServiceAccount", lambda: kube.get(
                    f"/api/v1/namespaces/{ns}/serviceaccounts/default"), 30)  # fmt: skip
                image = node.test_image
                plan = job_plan(
                    {"app": REPOSITORY},
                    job_config("unit-tests", Trigger.POST_BUILD, "app",
                               "echo collecting 42 tests; sleep 2; echo 42 passed", image, "/w"),
                    job_config("lint", Trigger.POST_BUILD, "app",
                               "echo 'src/app.py:3: unused import os' >&2; exit 1", image, "/w"),
                    job_config("migrate-check", Trigger.POST_BUILD, "app",
                               "echo schema up to date", image, "/w"),
                    job_config("smoke", Trigger.POST_DEPLOY, "app", "echo smoke ok", image, "/w"),
                    job_config("seed-data", Trigger.MANUAL, "app", "echo seeded", image, "/w"),
                )  # fmt: skip
                catalyst = Catalyst(client, ns, image)
                with controller(api, ns, plan), ui_server(kube, "local", (ns,), plan) as ui:
                    catalyst.create(REPOSITORY, SHA)
                    catalyst.built(SHA)
                    catalyst.wait_conditions(
                        "the PostBuild jobs", {"Job.app.unit-tests": "True",
                                               "Job.app.lint": "False"}, 120,
                    )  # fmt: skip
                    time.sleep(2)
                    with chromium() as browser:
                        page = browser.new_page(viewport={"width": 1280, "height": 640})
                        page.goto(ui.url)
                        page.screenshot(path=str(args.out / "index.png"))
                        page.goto(f"{ui.base_url}/environments/{ns}/pr-1")
                        page.screenshot(path=str(args.out / "jobs-tab.png"))
                        page.goto(f"{ui.base_url}/environments/{ns}/pr-1/jobs/app/lint")
                        page.locator("#log").get_by_text("unused import").wait_for()
                        page.screenshot(path=str(args.out / "job-log.png"))
        finally:
            node.stop()
            cp.stop()
    print(f"screenshots in {args.out}/: index.png jobs-tab.png job-log.png")


if __name__ == "__main__":
    main()
