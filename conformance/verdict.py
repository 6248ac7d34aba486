"""What a conformance run means for a shell or CI: the exit code of `mpx conformance` and its backend options.

Exit 0: every case that ran passed (unsupported, upcast and fallback cases are reported, not failures);
1: a case failed, errored, crashed, timed out or was downcast, or a backend named with --backend is unavailable.
A backend that was not asked for by name (a run with no --backend runs every backend mpx knows) may be
unavailable here without failing the run: a laptop without a GPU still certifies its CPU backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from mpx.errors import ConformanceError

from .report import Report

PASSED, FAILED = 0, 1


def exit_code(report: Report, requested: Sequence[str] = ()) -> int:
    """0 when the run passed, 1 when a case is a problem or a requested backend is unavailable."""
    named = set(requested)
    for backend in report.backends:
        if not backend.available and backend.name in named:
            return FAILED
        if any(case.status.problem for case in backend.cases):
            return FAILED
    return PASSED


def failures(report: Report, requested: Sequence[str] = ()) -> list[str]:
    """One line per reason the run exits 1 (a requested backend that is unavailable, a count of problem cases)."""
    named, lines = set(requested), []
    for backend in report.backends:
        if not backend.available and backend.name in named:
            lines.append(f"{backend.name}: unavailable: {backend.reason}")
        problems = [case for case in backend.cases if case.status.problem]
        if problems:
            lines.append(f"{backend.name}: {len(problems)} case(s) failed, errored, crashed, timed out or downcast")
    return lines


def parse_backend_options(items: Iterable[str], flag: str = "--backend-option") -> dict[str, Any]:
    """KEY=VALUE pairs as get_backend(**options) keywords; VALUE is JSON where it parses, else a string."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConformanceError(
                f"bad {flag} {item!r}: write KEY=VALUE with KEY a Python name, "
                f'e.g. {flag} overflow=saturate or {flag} \'provider_options={{"x": "1"}}\''
            )
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options
