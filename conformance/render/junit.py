"""JUnit XML for CI: one testsuite per backend, one testcase per case id.

Each status maps to its JUnit kind (Status.junit): fail and downcast -> <failure>; error, crash, timeout ->
<error>; unsupported, upcast, fallback -> <skipped> (they do not run as asked); pass -> a passing testcase.
Every testcase carries its mpx status as a property.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

from ..report import BackendReport, Report
from .grid import format_ulp
from .sanitize import clean


def render(report: Report) -> str:
    """The report as a JUnit XML document."""
    root = ET.Element("testsuites", name="mpx-conformance")
    for backend in report.backends:
        root.append(_suite(backend))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(backend: BackendReport) -> ET.Element:
    kinds = Counter(case.status.junit for case in backend.cases)
    suite = ET.Element(
        "testsuite",
        name=clean(f"mpx-conformance.{backend.name}"),
        tests=str(len(backend.cases) or 1),
        failures=str(kinds["failure"]),
        errors=str(kinds["error"]),
        skipped=str(kinds["skipped"] if backend.available else 1),
        time=f"{sum(c.time_s for c in backend.cases):.3f}",
    )
    if not backend.available:
        classname = clean(f"mpx.{backend.name}")
        case = ET.SubElement(suite, "testcase", classname=classname, name="backend-available", time="0")
        ET.SubElement(case, "skipped", message=clean(f"backend not available: {backend.reason}"))
        return suite
    for result in backend.cases:
        classname = clean(f"mpx.{backend.name}.{result.op}")
        case = ET.SubElement(suite, "testcase", classname=classname, name=clean(result.id), time=f"{result.time_s:.4f}")
        properties = ET.SubElement(case, "properties")
        ET.SubElement(properties, "property", name="mpx-status", value=result.status.value)
        if result.max_error_ulp is not None:
            ET.SubElement(
                properties, "property", name="max-error-ulp", value=format_ulp(result.max_error_ulp, digits=6)
            )
        detail = clean(result.detail)  # XML 1.0 characters only: an ANSI colour code would break the file
        message = f"{result.status}: {detail}" if detail else result.status.value
        kind = result.status.junit
        if result.status.problem:  # <failure> or <error>
            ET.SubElement(case, kind, message=message, type=result.status.value).text = detail
        elif kind == "skipped":
            ET.SubElement(case, "skipped", message=message)
    return suite
