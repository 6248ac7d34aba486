"""The conformance suite: cases from the op registry, the runner, scenario roll-up and the report writers."""

from .cases import Case, generate, parse_case_id
from .report import SCHEMA, STATUSES, BackendReport, CaseResult, Report, ScenarioResult
from .runner import run_case, run_cases
from .suite import Selection, run_suite

__all__ = [
    "SCHEMA",
    "STATUSES",
    "BackendReport",
    "Case",
    "CaseResult",
    "Report",
    "ScenarioResult",
    "Selection",
    "generate",
    "parse_case_id",
    "run_case",
    "run_cases",
    "run_suite",
]
