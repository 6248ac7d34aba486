"""What `mpx conformance` does: validate the selection and output paths, run, print, write the reports."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .errors import ConformanceError
from .formats import FP8_E5M2


def _writers() -> dict[str, Callable[[Any], str]]:
    from .conformance import html, junit, markdown

    return {
        "json": lambda report: report.to_json() + "\n",
        "html": html.render,
        "markdown": markdown.render,
        "junit": junit.render,
    }


def run(args: argparse.Namespace) -> int:
    """Run the suite as the parsed arguments say; returns the exit code."""
    from .cli.conformance_command import DEFAULT_HTML
    from .conformance.cases import generate
    from .conformance.outputs import check_writable, write_atomic
    from .conformance.scenarios import select_formats, select_scenarios
    from .conformance.suite import Selection, run_suite

    scenarios = select_scenarios(args.scenario)
    formats = select_formats(args.format)
    case_formats = list(formats)
    if args.format and any(f.name == "fp8_e4m3" for f in formats) and FP8_E5M2 not in formats:
        case_formats.append(FP8_E5M2)  # the fp8-hybrid column's backward GEMMs are e5m2
    cases = generate(case_formats, args.op, args.case)
    if args.timeout is not None and args.timeout <= 0:
        raise ConformanceError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    if args.timeout is not None and args.isolate is False:
        raise ConformanceError("--timeout needs cases in child processes; drop --no-isolate (or drop --timeout)")
    if args.workers < 1:
        raise ConformanceError(f"--workers must be at least 1, not {args.workers}")
    outputs = {kind: getattr(args, kind) for kind in ("json", "html", "markdown", "junit") if getattr(args, kind)}
    if not outputs:
        outputs["html"] = DEFAULT_HTML
    for kind, path in outputs.items():
        check_writable(path, f"{kind} report")
    isolate = True if args.timeout is not None and args.isolate is None else args.isolate
    selection = Selection(args.backend, scenarios, formats, cases, isolate, args.timeout or 60.0, args.workers)
    interactive = sys.stderr.isatty() and not args.quiet
    report = _run_with_progress(selection, run_suite) if interactive else run_suite(selection)
    writers = _writers()
    for kind, path in outputs.items():
        write_atomic(path, writers[kind](report))
    if not args.quiet:
        from .conformance.terminal import print_summary

        print_summary(report)
        for kind, path in outputs.items():
            print(f"{kind} report: {path}")
    return 0


def _run_with_progress(selection: Any, run_suite: Callable[..., Any]) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
    )
    with Progress(*columns, transient=True) as progress:
        tasks: dict[str, Any] = {}
        current: list[str] = []

        def on_start(name: str, total: int) -> None:
            tasks[name] = progress.add_task(name, total=total, last="")
            current[:] = [name]

        def on_result(result: Any) -> None:
            progress.update(tasks[current[0]], advance=1, last=f"{result.id} {result.status}")

        return run_suite(selection, on_start, on_result)


def diff(args: argparse.Namespace) -> int:
    """Print what changed between two JSON reports; exit 1 on any regression."""
    from .conformance.diff import diff_reports, render_text
    from .conformance.report import Report

    changes = diff_reports(Report.load(args.old), Report.load(args.new))
    print(json.dumps(changes.to_dict(), indent=1) if args.diff_json else render_text(changes))
    return 1 if changes.has_regressions else 0
