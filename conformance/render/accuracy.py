"""The accuracy tables in the reports: a JAX-style table per format (ops x backends), then each backend's details.

A summary cell reads 'CR' (every result correctly rounded) or '<max ULP> ulp, <n> not CR', then how it ran when
not natively (upcast, fallback, decomposed) and the tolerance profile's verdict: 'within <profile>', 'over
<profile>', or nothing where no limit is published. The details list every row that is not correctly rounded or
did not run: worst input, what the backend gave, the right answer.
"""

from __future__ import annotations

from ..accuracy_tables import AccuracyTables, TableRow
from ..report import BackendReport, Report
from ..tolerance_profiles import PROFILES
from .sanitize import html as _html
from .sanitize import markdown as _md

INTRO = (
    "Every element-wise op and its backward (output gradient 1: the derivative) over all 65,536 fp16 and all "
    "65,536 bf16 values (fp32: a 65,536-value sample of bit patterns), one backend call each. Reference: float64, "
    "rounded once to the format (the correctly rounded result). max ULP: distance from it in ULPs of the format "
    "(0 = correctly rounded, CUDA's metric); 'vs float64': error against the unrounded value (0.5 = correctly "
    "rounded, OpenCL's and JAX's metric). NaN where the reference is NaN is exact."
)
STYLE = (
    "<style>.acc-cr{background:#c8e6c9}.acc-within{background:#fff9c4}.acc-over{background:#ffcdd2}"
    ".acc-nolimit{background:#ffe0b2}.acc-unsupported{background:#eeeeee;color:#666}"
    ".acc-error{background:#b71c1c;color:#fff}</style>"
)


def grids(report: Report) -> dict[str, dict[tuple[str, str], dict[str, TableRow]]]:
    """format -> (op, pass) -> backend -> row, in the order the rows were made."""
    result: dict[str, dict[tuple[str, str], dict[str, TableRow]]] = {}
    for backend in report.backends:
        for row in _rows(backend):
            result.setdefault(row.format, {}).setdefault((row.op, row.pass_), {})[backend.name] = row
    return result


def cell_text(row: TableRow | None, profile: str) -> str:
    """A summary cell (see the module docstring)."""
    if row is None:
        return ""
    if row.status != "measured":
        return row.status
    how = f" ({row.support})" if row.support in ("upcast", "fallback", "decomposed") else ""
    if row.correctly_rounded:
        return "CR" + how
    text = f"{_ulp(row.max_ulp)} ulp, {row.not_correctly_rounded} not CR{how}"
    if row.within is None:
        return text
    return f"{text} · {'within' if row.within else 'over'} {profile}"


def cell_class(row: TableRow | None) -> str:
    """The CSS class of a cell: acc-cr, acc-within, acc-over, acc-nolimit, acc-unsupported or acc-error."""
    if row is None:
        return "none"
    if row.status != "measured":
        return f"acc-{row.status}"
    if row.correctly_rounded:
        return "acc-cr"
    return "acc-nolimit" if row.within is None else ("acc-within" if row.within else "acc-over")


def markdown_section(report: Report) -> list[str]:
    """The Markdown lines of the accuracy section ([] when no backend has tables)."""
    with_tables = [b for b in report.backends if b.accuracy is not None]
    if not with_tables:
        return []
    lines = ["## Accuracy tables", "", _md(INTRO), ""]
    lines += [f"- {_md(line)}" for line in _profiles(with_tables)] + [""]
    names = [b.name for b in with_tables if b.accuracy and b.accuracy.rows]
    profile = _profile_name(with_tables)
    for fmt, by_op in grids(report).items():
        lines += [f"### {_md(fmt)} ({_coverage(by_op)})", ""]
        lines += ["| op | pass | " + " | ".join(_md(n) for n in names) + " |", "|---" * (len(names) + 2) + "|"]
        for (op, pass_), by_backend in by_op.items():
            cells = [_md(cell_text(by_backend.get(n), profile)) for n in names]
            lines.append(f"| {_md(op)} | {_md(pass_)} | " + " | ".join(cells) + " |")
        lines.append("")
    for backend in with_tables:
        lines += _markdown_details(backend)
    return lines


def html_section(report: Report) -> str:
    """The HTML of the accuracy section ('' when no backend has tables)."""
    with_tables = [b for b in report.backends if b.accuracy is not None]
    if not with_tables:
        return ""
    names = [b.name for b in with_tables if b.accuracy and b.accuracy.rows]
    profile = _profile_name(with_tables)
    out = [STYLE, "<h2 id='accuracy'>Accuracy tables</h2>", f"<p>{_html(INTRO)}</p><ul>"]
    out += [f"<li>{_html(line)}</li>" for line in _profiles(with_tables)]
    out.append("</ul>")
    for fmt, by_op in grids(report).items():
        out.append(f"<h3>{_html(fmt)} ({_html(_coverage(by_op))})</h3>")
        out.append(f"<table class='accuracy' data-format='{_html(fmt)}'><tr><th>op</th><th>pass</th>")
        out += [f"<th data-backend='{_html(n)}'>{_html(n)}</th>" for n in names]
        out.append("</tr>")
        for (op, pass_), by_backend in by_op.items():
            out.append(f"<tr><td class='op'>{_html(op)}</td><td>{_html(pass_)}</td>")
            for name in names:
                row = by_backend.get(name)
                attrs = f"data-backend='{_html(name)}' data-op='{_html(op)}' data-pass='{_html(pass_)}'"
                if row is not None and row.status == "measured":
                    attrs += f" data-max-ulp='{_ulp(row.max_ulp)}' data-not-cr='{row.not_correctly_rounded}'"
                title = _html(_hover(row))
                out.append(
                    f"<td class='{cell_class(row)}' {attrs} title='{title}'>{_html(cell_text(row, profile))}</td>"
                )
            out.append("</tr>")
        out.append("</table>")
    for backend in with_tables:
        out.append(_html_details(backend))
    return "\n".join(out)


def summary_line(backend: BackendReport) -> str:
    """One line for the terminal: how many rows are correctly rounded, over the profile, not run ('' if no tables)."""
    tables = backend.accuracy
    if tables is None or not backend.available:
        return ""
    if tables.skipped:
        return f"accuracy tables {tables.skipped}"
    measured = [r for r in tables.rows if r.status == "measured"]
    rounded = sum(r.correctly_rounded for r in measured)
    over = [f"{r.op}/{r.format}/{r.pass_}" for r in measured if r.within is False]
    text = f"accuracy tables ({tables.profile}): {rounded} of {len(measured)} rows correctly rounded"
    text += f", {len(tables.rows) - len(measured)} not run"
    return text + (f"; over {tables.profile}: {', '.join(over)}" if over else "")


def _rows(backend: BackendReport) -> list[TableRow]:
    return list(backend.accuracy.rows) if backend.available and backend.accuracy is not None else []


def _profile_name(backends: list[BackendReport]) -> str:
    return next((b.accuracy.profile for b in backends if b.accuracy is not None), "")


def _profiles(backends: list[BackendReport]) -> list[str]:
    """One line per backend: its profile and source, how long its tables took, or why it has none."""
    lines = []
    for backend in backends:
        tables: AccuracyTables = backend.accuracy  # type: ignore[assignment]
        if tables.skipped:
            lines.append(f"{backend.name}: accuracy tables {tables.skipped}")
            continue
        profile = PROFILES.get(tables.profile)
        source = f"{tables.profile} ({profile.source})" if profile else tables.profile
        counted = [r for r in tables.rows if r.status == "measured"]
        rounded = sum(r.correctly_rounded for r in counted)
        lines.append(
            f"{backend.name}: tolerance profile {source}; {rounded} of {len(counted)} "
            f"measured rows correctly rounded, {len(tables.rows) - len(counted)} not run; {tables.time_s:.1f} s"
        )
    return lines


def _coverage(by_op: dict[tuple[str, str], dict[str, TableRow]]) -> str:
    rows = [r for by_backend in by_op.values() for r in by_backend.values() if r.status == "measured"]
    if not rows:
        return "no row measured"
    inputs = max(r.inputs for r in rows)
    return f"exhaustive, all {inputs:,} values" if rows[0].exhaustive else f"sampled, {inputs:,} values"


def _details(backend: BackendReport) -> list[TableRow]:
    """The rows worth a line: not correctly rounded, unsupported or failed."""
    return [r for r in _rows(backend) if not r.correctly_rounded]


def _detail_cells(row: TableRow) -> list[str]:
    if row.status != "measured":
        return [row.op, row.pass_, row.format, row.status, "", "", "", "", "", "", row.detail]
    limit = limit_text(row)
    within = "" if row.within is None else ("yes" if row.within else "no")
    return [
        row.op,
        row.pass_,
        row.format,
        _ulp(row.max_ulp),
        f"{row.max_ulp_exact:.3g}",
        f"{row.not_correctly_rounded} of {row.inputs:,}",
        ", ".join(row.worst_input),
        row.worst_got,
        row.worst_want,
        limit,
        within + (f" ({row.detail})" if row.detail else ""),
    ]


DETAIL_HEADER = (
    "op",
    "pass",
    "format",
    "max ULP",
    "vs float64",
    "not CR",
    "worst input",
    "got",
    "want",
    "limit",
    "within",
)


def limit_text(row: TableRow) -> str:
    return "no published limit" if row.limit is None else f"{row.limit:g} ULP"


def _markdown_details(backend: BackendReport) -> list[str]:
    rows = _details(backend)
    if not rows:
        return []
    lines = [f"### {_md(backend.name)}: rows not correctly rounded or not run", ""]
    lines += ["| " + " | ".join(DETAIL_HEADER) + " |", "|---" * len(DETAIL_HEADER) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in _detail_cells(row)) + " |" for row in rows]
    return [*lines, ""]


def _html_details(backend: BackendReport) -> str:
    rows = _details(backend)
    if not rows:
        return ""
    out = [f"<h3>{_html(backend.name)}: rows not correctly rounded or not run</h3>"]
    out.append(f"<table class='accuracy-details' data-backend='{_html(backend.name)}'><tr>")
    out += [f"<th>{_html(h)}</th>" for h in DETAIL_HEADER]
    out.append("</tr>")
    for row in rows:
        cells = "".join(f"<td>{_html(c)}</td>" for c in _detail_cells(row))
        out.append(f"<tr class='{cell_class(row)}'>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def _hover(row: TableRow | None) -> str:
    if row is None:
        return ""
    if row.status != "measured":
        return row.detail
    worst = ", ".join(row.worst_input)
    return (
        f"max {_ulp(row.max_ulp)} ulp ({row.max_ulp_exact:.3g} vs float64), {row.not_correctly_rounded} of "
        f"{row.inputs} not correctly rounded; worst input {worst}: got {row.worst_got}, want {row.worst_want}; "
        f"limit {limit_text(row)}; support {row.support}"
    )


def _ulp(value: float) -> str:
    return f"{value:.4g}"
