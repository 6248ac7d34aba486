"""The conformance suite: cases from the op registry, the runner, scenario roll-up and the report writers.

The public names load on first use: the pytest plugin lives in this package, and a pytest run that does not ask
for conformance cases must not pay for torch and the op registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cases import Case, generate, parse_case_id
    from .report import SCHEMA, BackendReport, CaseResult, Report, ScenarioResult
    from .runner import run_case, run_cases
    from .status import STATUSES, Status
    from .suite import Selection, run_suite

_HOMES = {
    "Case": "cases",
    "generate": "cases",
    "parse_case_id": "cases",
    "SCHEMA": "report",
    "BackendReport": "report",
    "CaseResult": "report",
    "Report": "report",
    "ScenarioResult": "report",
    "run_case": "runner",
    "run_cases": "runner",
    "STATUSES": "status",
    "Status": "status",
    "Selection": "suite",
    "run_suite": "suite",
}

__all__ = [
    "SCHEMA",
    "STATUSES",
    "BackendReport",
    "Case",
    "CaseResult",
    "Report",
    "ScenarioResult",
    "Selection",
    "Status",
    "generate",
    "parse_case_id",
    "run_case",
    "run_cases",
    "run_suite",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
