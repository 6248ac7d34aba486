"""What the writers share: the ops x formats grid of a backend, its readiness table, and how errors read.

A grid cell folds the input classes of one (op, pass, format) and shows the worst status among them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..report import BackendReport, CaseResult, Report, ScenarioResult
from ..status import Status, worst


def format_ulp(error: float | None, template: str = "{}", digits: int = 3) -> str:
    """A case's largest error in ULPs for display ('' when none was measured): `template` around the number."""
    return "" if error is None else template.format(f"{error:.{digits}g}")


@dataclass(frozen=True)
class Cell:
    """The worst status among a cell's cases, and the cases themselves."""

    status: Status
    cases: tuple[CaseResult, ...]

    @property
    def max_error_ulp(self) -> float | None:
        errors = [c.max_error_ulp for c in self.cases if c.max_error_ulp is not None]
        return max(errors) if errors else None

    def hover(self) -> str:
        """One line per case: its status, error and reason (the HTML title, the Markdown footnote)."""
        lines = []
        for case in self.cases:
            detail = f" - {case.detail}" if case.detail else ""
            lines.append(f"{case.input_class}: {case.status}{format_ulp(case.max_error_ulp, ' {} ulp')}{detail}")
        return "\n".join(lines)


def rows(report: Report) -> list[tuple[str, str]]:
    """(op, pass) rows in the order the cases were run, over every backend of the report."""
    seen: dict[tuple[str, str], None] = {}
    for backend in report.backends:
        for case in backend.cases:
            seen.setdefault((case.op, case.pass_), None)
    return list(seen)


def columns(report: Report) -> list[str]:
    """The formats that appear in the report, in case order."""
    seen: dict[str, None] = {}
    for backend in report.backends:
        for case in backend.cases:
            seen.setdefault(case.format, None)
    return list(seen)


def cells(backend: BackendReport) -> dict[tuple[str, str, str], Cell]:
    """(op, pass, format) -> Cell for one backend."""
    grouped: dict[tuple[str, str, str], list[CaseResult]] = {}
    for case in backend.cases:
        grouped.setdefault((case.op, case.pass_, case.format), []).append(case)
    return {key: Cell(worst(c.status for c in group), tuple(group)) for key, group in grouped.items()}


def problems(backend: BackendReport) -> list[CaseResult]:
    """The cases that did not give right numbers as asked (failures and errors), in run order."""
    return [c for c in backend.cases if c.status.problem]


def readiness(backend: BackendReport) -> tuple[list[str], dict[str, dict[str, ScenarioResult]]]:
    """A backend's scenario results as a grid: the format columns, and per scenario its results by format."""
    formats = list(dict.fromkeys(s.format for s in backend.scenarios))
    by_scenario: dict[str, dict[str, ScenarioResult]] = {}
    for result in backend.scenarios:
        by_scenario.setdefault(result.scenario, {})[result.format] = result
    return formats, by_scenario
