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
from mpx.formats import FORMATS, Format
from mpx.plugins import DISTRIBUTION, get_backend, is_builtin, list_backends, resolve
from mpx.plugins.manager import registry

from .accuracy_tables import TableRequest
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
    accuracy: TableRequest | None = None  # the exhaustive accuracy tables to make (None: none)
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
        declared = declared_formats(name)  # the suite runs exactly these (get_backend checks the backend agrees)
        selected = [case for case in selection.cases if case.format in declared]
        if on_start:
            on_start(name, len(selected))
        tables = None
        if isolate:
            ref = BackendRef(name, dict(selection.options))
            cases, description = run_isolated(
                ref, selected, selection.timeout, selection.workers, on_result, selection.worker_memory
            )
            if selection.accuracy is not None:
                from .accuracy_tables_run import tables_isolated

                tables = tables_isolated(ref, selection.accuracy, selection.timeout)
        else:
            try:
                backend = get_backend(name, **selection.options)
            except MpxError as error:
                reports.append(BackendReport(name, False, str(error)))
                continue
            cases = run_cases(backend, selected, on_result, cache)
            description = backend.describe()  # after the cases: run-time state (session-cache hits) is the pass's
            if selection.accuracy is not None:
                from .accuracy_tables_run import tables_in_process

                tables = tables_in_process(backend, selection.accuracy)
        scenarios = roll_up(selection.scenarios, cases, [c for c in columns if c in declared])
        reports.append(BackendReport(name, True, "", description, isolate, cases, scenarios, tables))
    return Report(run_metadata(started, selection), reports)


def declared_formats(name: str) -> tuple[str, ...]:
    """The formats backend `name` ('base' or 'base:variant') declares in its BackendSpec (all when unknown)."""
    spec = registry().specs.get(name.strip().partition(":")[0])
    return tuple(spec.formats) if spec is not None else tuple(f.name for f in FORMATS)


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
