"""The Markdown report: metadata, readiness per backend with what is missing, the op matrix and the failures."""

from __future__ import annotations

from ..report import BackendReport, Report
from ..status import Status
from .accuracy import markdown_section as accuracy_section
from .grid import cells, columns, format_ulp, problems, readiness, rows
from .sanitize import markdown as _escape
from .sanitize import markdown_code as _code


def render(report: Report) -> str:
    """The whole report as GitHub-flavoured Markdown."""
    meta = report.metadata
    lines = [
        "# mpx conformance report",
        "",
        f"mpx {_escape(meta.get('mpx'))} · torch {_escape(meta.get('torch'))} · "
        f"onnxruntime {_escape(meta.get('onnxruntime'))} · python {_escape(meta.get('python'))} · "
        f"{_escape(meta.get('machine', {}).get('arch', ''))} · {_escape(meta.get('started', ''))}",
        "",
    ]
    for backend in report.backends:
        lines += _backend(backend, report)
    lines += accuracy_section(report)
    return "\n".join(lines) + "\n"


def _backend(backend: BackendReport, report: Report) -> list[str]:
    if not backend.available:
        return [f"## {_escape(backend.name)}", "", f"Not available: {_escape(backend.reason)}", ""]
    counts = backend.counts()
    facts = backend.description
    lines = [
        f"## {_escape(backend.name)}",
        "",
        f"device {_escape(facts.get('device', '?'))}, overflow {_escape(facts.get('overflow', '?'))}, "
        f"subnormals {_escape(facts.get('subnormals', '?'))}; "
        + ", ".join(f"{counts[s]} {s}" for s in Status if counts[s]),
        "",
    ]
    if backend.scenarios:
        lines += _readiness(backend)
    grid = cells(backend)
    formats = columns(report)
    header = "| op | pass | " + " | ".join(_escape(f) for f in formats) + " |"
    lines += ["### Ops", "", header, "|---" * (len(formats) + 2) + "|"]
    for op, pass_ in rows(report):
        row = [grid[(op, pass_, f)].status if (op, pass_, f) in grid else "" for f in formats]
        lines.append(f"| {_escape(op)} | {_escape(pass_)} | " + " | ".join(row) + " |")
    lines.append("")
    listed = problems(backend)
    if listed:
        lines += ["### Failures", "", "| case | status | max error (ulp) | detail |", "|---|---|---|---|"]
        for case in listed:
            error = format_ulp(case.max_error_ulp)
            lines.append(f"| `{_code(case.id)}` | {case.status} | {error} | {_escape(case.detail)} |")
        lines.append("")
    return lines


def _readiness(backend: BackendReport) -> list[str]:
    """The scenario x format table, then each column's missing requirements and why."""
    formats, by_scenario = readiness(backend)
    lines = [
        "### Scenario readiness",
        "",
        "| scenario | " + " | ".join(_escape(f) for f in formats) + " |",
        "|---" * (len(formats) + 1) + "|",
    ]
    for name, by_format in by_scenario.items():
        row = [
            ("ready" if by_format[f].ready else f"{by_format[f].coverage:.0%}") if f in by_format else ""
            for f in formats
        ]
        lines.append(f"| {_escape(name)} | " + " | ".join(row) + " |")
    lines.append("")
    unmet = [s for s in backend.scenarios if s.missing]
    if unmet:
        lines += ["### Missing requirements", ""]
        for result in unmet:
            lines.append(f"- **{_escape(result.scenario)} / {_escape(result.format)}** ({_escape(result.policy)}):")
            for m in result.missing:
                lines.append(
                    f"  - `{_code(m.op)}` {_escape(m.format)} {_escape(m.pass_)}: {_escape(m.reason)}"
                    + (f" (needed for: {_escape(m.why)})" if m.why else "")
                )
        lines.append("")
    return lines
