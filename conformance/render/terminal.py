"""The terminal summary: per backend, the readiness matrix scenario x format, then the failures."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from ..report import BackendReport, Report
from ..status import Status
from .accuracy import summary_line
from .grid import format_ulp, problems, readiness
from .sanitize import markup as _text

MAX_LISTED = 25


def print_summary(report: Report, console: Console | None = None) -> None:
    """Print every backend's readiness matrix and its failing cases."""
    console = console or (Console() if sys.stdout.isatty() else Console(width=120))
    for backend in report.backends:
        if not backend.available:
            console.print(
                f"[bold]{_text(backend.name)}[/]: [bright_black]not available[/] - {_text(backend.reason)}",
                highlight=False,
            )
            continue
        _backend(console, backend)


def _backend(console: Console, backend: BackendReport) -> None:
    counts = backend.counts()
    tally = ", ".join(f"[{s.colour.terminal}]{counts[s]} {s}[/]" for s in Status if counts[s])
    facts = backend.description
    semantics = f"overflow={_text(facts.get('overflow', '?'))}, subnormals={_text(facts.get('subnormals', '?'))}"
    isolation = ", isolated" if backend.isolated else ""
    console.print(
        f"[bold]{_text(backend.name)}[/] ({_text(facts.get('device', '?'))}, {semantics}{isolation}): "
        f"{len(backend.cases)} cases: {tally}"
    )
    if backend.scenarios:
        console.print(readiness_table(backend))
    if summary_line(backend):
        console.print(f"  {_text(summary_line(backend))}", highlight=False)
    listed = problems(backend)
    for case in listed[:MAX_LISTED]:
        console.print(
            f"  [{case.status.colour.terminal}]{case.status:8}[/] {_text(case.id)}"
            f"{format_ulp(case.max_error_ulp, ' ({} ulp)')}: {_text(case.detail)}",
            overflow="fold",
            markup=True,
            highlight=False,
        )
    if len(listed) > MAX_LISTED:
        console.print(f"  ... and {len(listed) - MAX_LISTED} more; see the HTML, Markdown or JSON report")


def readiness_table(backend: BackendReport) -> Table:
    """Scenario rows x format columns: 'ready', or the coverage and how many requirements are missing."""
    columns, by_scenario = readiness(backend)
    table = Table(title=f"{_text(backend.name)}: scenario readiness", title_justify="left")
    table.add_column("scenario", no_wrap=True)
    for column in columns:
        table.add_column(_text(column), justify="center")
    for name, by_format in by_scenario.items():
        row = []
        for column in columns:
            result = by_format.get(column)
            if result is None:
                row.append("")
            elif result.ready:
                row.append("[green]ready[/]")
            else:
                row.append(f"[red]{result.coverage:.0%}[/] ({len(result.missing)} missing)")
        table.add_row(_text(name), *row)
    return table
