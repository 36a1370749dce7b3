"""Machine-readable reports of a run (pure): the `-o json` document and JUnit XML.

JUnit layout, as CI systems group it: one `<testsuite>` per lifecycle point, one
`<testcase>` per job (`classname` = source), `<failure>` for a failed job with its exit
code and the tail of its output, `<error>` for a cancelled one (timeout, Ctrl-C), and
`<skipped>` for one that never ran.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from devjobs.resolver.models import API_VERSION
from devjobs.runner.local.results import JobResult, JobStatus, RunResult, counts

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
"""Characters XML 1.0 cannot carry at all, not even escaped (e.g. terminal escapes)."""


def result_document(result: RunResult) -> dict[str, Any]:
    """The `-o json` document: the verdict, then every job in run order."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RunResult",
        "backend": result.backend,
        "succeeded": result.succeeded,
        "interrupted": result.interrupted,
        "exitCode": result.exit_code,
        "durationSeconds": round(result.duration_seconds, 3),
        "counts": {status.value: n for status, n in counts(result.jobs).items()},
        "warnings": list(result.warnings),
        "jobs": [_job_document(job) for job in result.jobs],
    }


def _job_document(job: JobResult) -> dict[str, Any]:
    return {
        "source": job.source,
        "name": job.name,
        "trigger": job.trigger.value,
        "status": job.status.value,
        "exitCode": job.exit_code,
        "durationSeconds": round(job.duration_seconds, 3),
        "attempts": job.attempts,
        "message": job.message,
        "outputTail": list(job.output_tail),
    }


def junit_xml(result: RunResult) -> str:
    """The run as a JUnit XML document (UTF-8 text with its declaration)."""
    suites = ET.Element("testsuites", name="devjobs")
    _totals(suites, list(result.jobs), result.duration_seconds)
    triggers = list(dict.fromkeys(job.trigger for job in result.jobs))
    for trigger in triggers:
        jobs = [job for job in result.jobs if job.trigger == trigger]
        suite = ET.SubElement(suites, "testsuite", name=trigger.value)
        _totals(suite, jobs, sum(job.duration_seconds for job in jobs))
        for job in jobs:
            case = ET.SubElement(
                suite,
                "testcase",
                name=job.name,
                classname=job.source,
                time=f"{job.duration_seconds:.3f}",
            )
            _outcome(case, job)
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _totals(element: ET.Element, jobs: list[JobResult], seconds: float) -> None:
    n = counts(jobs)
    element.set("tests", str(len(jobs)))
    element.set("failures", str(n[JobStatus.FAILED]))
    element.set("errors", str(n[JobStatus.CANCELLED]))
    element.set("skipped", str(n[JobStatus.SKIPPED]))
    element.set("time", f"{seconds:.3f}")


def _outcome(case: ET.Element, job: JobResult) -> None:
    tail = _clean("\n".join(job.output_tail))
    message = _clean(job.message)
    if job.status == JobStatus.FAILED:
        code = "no exit code" if job.exit_code is None else f"exit code {job.exit_code}"
        failure = ET.SubElement(case, "failure", message=f"{code}: {message}", type="failed")
        failure.text = tail
    elif job.status == JobStatus.CANCELLED:
        error = ET.SubElement(case, "error", message=message, type="cancelled")
        error.text = tail
    elif job.status == JobStatus.SKIPPED:
        ET.SubElement(case, "skipped", message=message)
    if job.status != JobStatus.SKIPPED and tail:
        ET.SubElement(case, "system-out").text = tail


def _clean(text: str) -> str:
    return _NOT_XML.sub("\N{REPLACEMENT CHARACTER}", text)
