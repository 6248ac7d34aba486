"""JUnit XML for CI: one testsuite per backend, one testcase per case id.

fail -> <failure>; error, crash, timeout -> <error>; unsupported, upcast, fallback -> <skipped> (they do not run
as asked); pass -> a passing testcase. Every testcase carries its mpx status as a property.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .report import BackendReport, Report

FAILURE = ("fail",)
ERROR = ("error", "crash", "timeout")
SKIPPED = ("unsupported", "upcast", "fallback")


def render(report: Report) -> str:
    """The report as a JUnit XML document."""
    root = ET.Element("testsuites", name="mpx-conformance")
    for backend in report.backends:
        root.append(_suite(backend))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(backend: BackendReport) -> ET.Element:
    counts = backend.counts()
    suite = ET.Element(
        "testsuite",
        name=f"mpx-conformance.{backend.name}",
        tests=str(len(backend.cases) or 1),
        failures=str(sum(counts[s] for s in FAILURE)),
        errors=str(sum(counts[s] for s in ERROR)),
        skipped=str(sum(counts[s] for s in SKIPPED) if backend.available else 1),
        time=f"{sum(c.time_s for c in backend.cases):.3f}",
    )
    if not backend.available:
        case = ET.SubElement(suite, "testcase", classname=f"mpx.{backend.name}", name="backend-available", time="0")
        ET.SubElement(case, "skipped", message=f"backend not available: {backend.reason}")
        return suite
    for result in backend.cases:
        case = ET.SubElement(
            suite, "testcase", classname=f"mpx.{backend.name}.{result.op}", name=result.id, time=f"{result.time_s:.4f}"
        )
        properties = ET.SubElement(case, "properties")
        ET.SubElement(properties, "property", name="mpx-status", value=result.status)
        if result.max_error_ulp is not None:
            ET.SubElement(properties, "property", name="max-error-ulp", value=f"{result.max_error_ulp:.6g}")
        message = f"{result.status}: {result.detail}" if result.detail else result.status
        if result.status in FAILURE:
            ET.SubElement(case, "failure", message=message, type=result.status).text = result.detail
        elif result.status in ERROR:
            ET.SubElement(case, "error", message=message, type=result.status).text = result.detail
        elif result.status in SKIPPED:
            ET.SubElement(case, "skipped", message=message)
    return suite
