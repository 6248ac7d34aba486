"""A whole conformance run: pick backends, run their cases (in or out of process), roll up, collect metadata."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mpx.errors import MpxError
from mpx.formats import Format
from mpx.plugins import DISTRIBUTION, get_backend, is_builtin, list_backends, resolve

from .cases import Case
from .isolation import BackendRef, run_isolated
from .report import BackendReport, CaseResult, Report
from .rollup import roll_up
from .runner import ReferenceCache, run_cases
from .scenarios import Scenario

ProgressStart = Callable[[str, int], None]


@dataclass
class Selection:
    """What to run: backends by name ('' for every one), scenarios, format columns and cases."""

    backends: Sequence[str]
    scenarios: Sequence[Scenario]
    formats: Sequence[Format]
    cases: Sequence[Case]
    isolate: bool | None = None  # None: isolate the backends that are not built in
    timeout: float = 60.0
    workers: int = 2
    options: dict[str, Any] = field(default_factory=dict)
    worker_memory: int | None = None  # bytes of address space per isolated worker (None: no limit)


def resolve_backends(names: Sequence[str]) -> list[tuple[str, str | None]]:
    """(name, None) for each backend to run, (name, reason) for each that cannot run here.

    No names: every backend mpx knows. Unknown or ambiguous names raise (BackendNotFoundError, PluginError)
    before anything runs.
    """
    if not names:
        return [(e.name, None if e.available else e.reason) for e in list_backends()]
    return [(name, resolve(name)) for name in dict.fromkeys(names)]


def run_suite(
    selection: Selection,
    on_start: ProgressStart | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> Report:
    """Run the selection on each backend and return the report (cases, scenario roll-up, metadata)."""
    started = time.time()
    cache = ReferenceCache()
    columns = [f.name for f in selection.formats]
    reports = []
    for name, unavailable in resolve_backends(selection.backends):
        if unavailable is not None:
            reports.append(BackendReport(name, False, unavailable))
            continue
        isolate = selection.isolate if selection.isolate is not None else not is_builtin(name)
        if on_start:
            on_start(name, len(selection.cases))
        if isolate:
            ref = BackendRef(name, dict(selection.options))
            cases, description = run_isolated(
                ref, selection.cases, selection.timeout, selection.workers, on_result, selection.worker_memory
            )
        else:
            try:
                backend = get_backend(name, **selection.options)
            except MpxError as error:
                reports.append(BackendReport(name, False, str(error)))
                continue
            cases = run_cases(backend, selection.cases, on_result, cache)
            description = backend.describe()  # after the cases: run-time state (session-cache hits) is the pass's
        scenarios = roll_up(selection.scenarios, cases, columns)
        reports.append(BackendReport(name, True, "", description, isolate, cases, scenarios))
    return Report(run_metadata(started, selection), reports)


def run_metadata(started: float, selection: Selection) -> dict[str, Any]:
    """Versions, machine and time: what a reader needs to reproduce or compare a report."""
    return {
        "mpx": _version(DISTRIBUTION),
        "torch": _version("torch"),
        "onnxruntime": _onnxruntime_version(),
        "python": platform.python_version(),
        "machine": {
            "system": platform.system(),
            "release": platform.release(),
            "arch": platform.machine(),
            "processor": platform.processor(),
            "node": platform.node(),
        },
        "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 3),
        "selection": {
            "scenarios": [s.name for s in selection.scenarios],
            "formats": [f.name for f in selection.formats],
            "cases": len(selection.cases),
            "timeout_s": selection.timeout,
        },
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _onnxruntime_version() -> str | None:
    """The version of whichever distribution installs the onnxruntime module (without importing it)."""
    for distribution in (
        "onnxruntime",
        "onnxruntime-gpu",
        "onnxruntime-openvino",
        "onnxruntime-directml",
        "onnxruntime-qnn",
    ):
        version = _version(distribution)
        if version:
            return f"{version} ({distribution})"
    return None
