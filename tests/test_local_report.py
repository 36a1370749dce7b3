"""The -o json document and the JUnit XML of a local run (pure renderings)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from devjobs.resolver.models import Trigger
from devjobs.runner.local.display import format_duration, summary_line
from devjobs.runner.local.report import junit_xml, result_document
from devjobs.runner.local.results import JobResult, JobStatus, RunResult

RUN = RunResult(
    backend="process",
    duration_seconds=3.5,
    jobs=(
        JobResult("app", "lint", Trigger.POST_BUILD, JobStatus.SUCCEEDED, 0, 1.25, 1),
        JobResult(
            "app", "test", Trigger.POST_BUILD, JobStatus.FAILED, 3, 2.0, 2,
            "command exited with 3", ("collected 2 items", "FAILED \x1b[31mtest_x\x1b[0m <&>"),
        ),
        JobResult(
            "web", "slow", Trigger.POST_BUILD, JobStatus.CANCELLED, None, 1.0, 1,
            "timed out after 1s", ("waiting",),
        ),
        JobResult(
            "app", "smoke", Trigger.POST_DEPLOY, JobStatus.SKIPPED,
            message="PostBuild did not succeed",
        ),
    ),
)  # fmt: skip


def test_json_document_has_the_verdict_counts_and_every_job_in_run_order() -> None:
    doc = result_document(RUN)
    assert doc["kind"] == "RunResult"
    assert (doc["succeeded"], doc["exitCode"], doc["interrupted"]) == (False, 1, False)
    assert doc["counts"] == {"succeeded": 1, "failed": 1, "cancelled": 1, "skipped": 1}
    assert [(j["source"], j["name"], j["status"]) for j in doc["jobs"]] == [
        ("app", "lint", "succeeded"),
        ("app", "test", "failed"),
        ("web", "slow", "cancelled"),
        ("app", "smoke", "skipped"),
    ]
    assert doc["jobs"][1]["exitCode"] == 3
    assert doc["jobs"][1]["attempts"] == 2
    assert doc["jobs"][1]["outputTail"][0] == "collected 2 items"


def test_junit_has_a_suite_per_trigger_and_a_case_per_job() -> None:
    root = ET.fromstring(junit_xml(RUN))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "4", "1", "1", "1",
    )  # fmt: skip
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["PostBuild", "PostDeploy"]
    assert [c.get("name") for c in suites[0].findall("testcase")] == ["lint", "test", "slow"]
    assert suites[0].findall("testcase")[2].get("classname") == "web"


def test_junit_failure_carries_exit_code_and_output_tail_as_valid_xml() -> None:
    text = junit_xml(RUN)
    root = ET.fromstring(text)
    failure = root.find("testsuite/testcase[@name='test']/failure")
    assert failure is not None
    assert failure.get("message") == "exit code 3: command exited with 3"
    assert failure.text is not None and "FAILED" in failure.text and "<&>" in failure.text
    assert "\x1b" not in text  # terminal escapes are not XML 1.0 characters


def test_junit_cancelled_is_an_error_and_skipped_is_skipped() -> None:
    root = ET.fromstring(junit_xml(RUN))
    error = root.find("testsuite/testcase[@name='slow']/error")
    assert error is not None and error.get("message") == "timed out after 1s"
    skipped = root.find("testsuite/testcase[@name='smoke']/skipped")
    assert skipped is not None and skipped.get("message") == "PostBuild did not succeed"


def test_summary_line_counts_only_statuses_present() -> None:
    assert summary_line(RUN) == "1 succeeded, 1 failed, 1 cancelled, 1 skipped in 3.50s"


def test_durations_are_short_and_exact_enough() -> None:
    assert [format_duration(s) for s in (0.0123, 12.34, 125.4)] == ["0.01s", "12.3s", "2m05s"]
