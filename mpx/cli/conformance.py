"""`mpx conformance`: run the conformance suite and write its reports; `mpx conformance diff OLD.json NEW.json`."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from mpx.cli._arguments import memory_size, positive_integer
from mpx.errors import ConformanceError
from mpx.formats import FP8_E5M2

DEFAULT_HTML = "mpx-conformance.html"
REPORT_KINDS = ("json", "html", "markdown", "junit")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "conformance",
        help="run every op of a backend in every format against the reference",
        description="Run the conformance suite: every op x format x pass x input class on each backend, rolled up "
        f"into scenario readiness. With no arguments: every available backend, a summary, and {DEFAULT_HTML}.",
    )
    add = parser.add_argument
    add(
        "--backend",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="backend(s) to run (default: every one mpx knows)",
    )
    add(
        "--backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for get_backend(NAME, KEY=VALUE) of every selected backend (repeatable; VALUE is JSON "
        'where it parses, else a string), e.g. \'provider_options={"x": "1"}\'',
    )
    add(
        "--scenario",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="scenario(s) to roll up (default: all)",
    )
    add("--format", action="extend", nargs="+", default=[], metavar="FMT", help="format(s) to run (default: all)")
    add("--op", action="extend", nargs="+", default=[], metavar="NAME", help="op(s) to run (default: all)")
    add(
        "--case",
        action="extend",
        nargs="+",
        default=[],
        metavar="ID",
        help="case id(s) to rerun, e.g. matmul/bf16/backward/long-reduction",
    )
    add(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run cases in child processes (default: only for backends that are not built in)",
    )
    add(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="per-case timeout in seconds for isolated runs (default 60; implies --isolate)",
    )
    add(
        "--workers",
        type=positive_integer,
        default=None,
        metavar="N",
        help="child processes per isolated backend (default 2; at most the cases, the CPUs and what memory allows)",
    )
    add(
        "--worker-memory",
        type=memory_size,
        default=None,
        metavar="SIZE",
        help="cap each isolated worker's address space (e.g. 4G); a case that needs more is that case's error",
    )
    add("--json", metavar="PATH", help="write the JSON report (schema mpx-conformance/1)")
    add(
        "--html",
        metavar="PATH",
        help=f"write the single-file HTML report (default {DEFAULT_HTML} when no other report is asked for)",
    )
    add("--markdown", metavar="PATH", help="write the Markdown report")
    add("--junit", metavar="PATH", help="write JUnit XML (one testcase per case id)")
    add("--repro", metavar="DIR", help="write a repro bundle per failing case into DIR (ONNX test layout for onnxrt)")
    add(
        "--exit-zero",
        action="store_true",
        help="exit 0 even when cases fail (report-only runs); default: exit 1 on a fail, error, crash, timeout, "
        "downcast or an unavailable --backend",
    )
    add("--quiet", action="store_true", help="no progress bar and no summary")
    add(
        "--accuracy-tables",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="make the exhaustive accuracy tables: every element-wise op and its backward over all 65,536 fp16 and "
        "bf16 values (and a 65,536-value fp32 sample) on each backend (default: on)",
    )
    add(
        "--accuracy-chunk",
        type=int,
        default=None,
        metavar="N",
        help="values per backend call in the accuracy tables, for a backend that cannot take all 65,536 at once",
    )
    add(
        "--tolerance",
        choices=("strict", "opencl", "cuda"),
        default="opencl",
        help="published max-ULP limits the accuracy tables are judged by: strict (correctly rounded), opencl "
        "(OpenCL 1.2 single precision), cuda (CUDA math API) (default: opencl)",
    )
    parser.set_defaults(run=run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    diff = actions.add_parser("diff", help="compare two JSON reports: improved and regressed cases, scenario changes")
    diff.add_argument("old", metavar="OLD.json")
    diff.add_argument("new", metavar="NEW.json")
    diff.add_argument("--json", dest="diff_json", action="store_true", help="print the diff as JSON")
    diff.set_defaults(run=run_diff)


def _writers() -> dict[str, Callable[[Any], str]]:
    from mpx.conformance.render import html, junit, markdown

    return {
        "json": lambda report: report.to_json() + "\n",
        "html": html.render,
        "markdown": markdown.render,
        "junit": junit.render,
    }


def run(args: argparse.Namespace) -> int:
    """Run the suite as the parsed arguments say; returns the exit code."""
    from mpx._io import atomic_write_text as write_atomic
    from mpx.conformance.cases import generate
    from mpx.conformance.output_paths import check_writable
    from mpx.conformance.scenarios import select_formats, select_scenarios
    from mpx.conformance.suite import Selection, run_suite
    from mpx.conformance.verdict import exit_code, failures, parse_backend_options

    scenarios = select_scenarios(args.scenario)
    formats = select_formats(args.format)
    case_formats = list(formats)
    if args.format and any(f.name == "fp8_e4m3" for f in formats) and FP8_E5M2 not in formats:
        case_formats.append(FP8_E5M2)  # the fp8-hybrid column's backward GEMMs are e5m2
    cases = generate(case_formats, args.op, args.case)
    options = parse_backend_options(args.backend_option)
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConformanceError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    if args.timeout is not None and args.isolate is False:
        raise ConformanceError("--timeout needs cases in child processes; drop --no-isolate (or drop --timeout)")
    outputs = {kind: getattr(args, kind) for kind in REPORT_KINDS if getattr(args, kind) is not None}
    empty = [kind for kind, path in outputs.items() if not path.strip()]
    if empty:
        raise ConformanceError(f"--{empty[0]} got an empty path; give a file name")
    resolved = [os.path.abspath(path) for path in outputs.values()]
    same = [path for path in outputs.values() if resolved.count(os.path.abspath(path)) > 1]
    if same:
        raise ConformanceError(f"two reports would be written to {same[0]!r}; give each report its own path")
    if not outputs:
        outputs["html"] = DEFAULT_HTML
    for kind, path in outputs.items():
        check_writable(path, f"{kind} report")
    if args.repro:
        from mpx.conformance.repro import check_repro_dir

        check_repro_dir(args.repro)
    if args.worker_memory is not None and args.isolate is False:
        raise ConformanceError("--worker-memory limits child processes; drop --no-isolate (or drop --worker-memory)")
    isolate = True if args.timeout is not None and args.isolate is None else args.isolate
    workers, timeout, memory = args.workers or 2, args.timeout or 60.0, args.worker_memory
    selection = Selection(
        args.backend, scenarios, formats, cases, isolate, timeout, workers, options, worker_memory=memory
    )
    _note_worker_cap(args, len(cases))
    from mpx.conformance.accuracy_tables_run import table_request

    names = [f.name for f in formats]
    if args.accuracy_chunk is not None and args.accuracy_chunk < 1:
        raise ConformanceError(f"--accuracy-chunk must be at least 1, not {args.accuracy_chunk}")
    selection.accuracy = table_request(
        args.accuracy_tables, args.tolerance, args.op, names, args.case, args.accuracy_chunk
    )
    interactive = sys.stderr.isatty() and not args.quiet
    try:
        with _sigterm_ends_the_run():
            report = _run_with_progress(selection, run_suite) if interactive else run_suite(selection)
    except Terminated:
        print("mpx conformance: terminated; the workers were stopped and no report was written", file=sys.stderr)
        return 128 + int(signal.SIGTERM)
    writers = _writers()
    for kind, path in outputs.items():
        write_atomic(path, writers[kind](report))
    if args.repro:
        from mpx.conformance.repro import write_bundles

        bundles = write_bundles(report, args.repro, options)
        if not args.quiet:
            print(f"repro bundles: {len(bundles)} in {args.repro}")
    if not args.quiet:
        from mpx.conformance.render.terminal import print_summary

        print_summary(report)
        for kind, path in outputs.items():
            print(f"{kind} report: {path}")
    code = 0 if args.exit_zero else exit_code(report, args.backend)
    if code and not args.quiet:
        for line in failures(report, args.backend):
            print(f"mpx conformance: {line}", file=sys.stderr)
    return code


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the run's cleanup kills its workers before the process ends."""


@contextlib.contextmanager
def _sigterm_ends_the_run() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _note_worker_cap(args: argparse.Namespace, cases: int) -> None:
    """Say so when the machine caps an explicit --workers below what was asked (not when the cases do)."""
    from mpx.conformance.worker_limits import worker_count

    if args.workers is None or args.quiet or args.isolate is False:
        return
    count, reason = worker_count(args.workers, cases, args.worker_memory)
    if reason:
        print(f"mpx conformance: --workers {args.workers} capped at {count} ({reason})", file=sys.stderr)


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


def run_diff(args: argparse.Namespace) -> int:
    """Print what changed between two JSON reports; exit 1 on any regression."""
    from mpx.conformance.diff import diff_reports, render_text
    from mpx.conformance.report import Report

    changes = diff_reports(Report.load(args.old), Report.load(args.new))
    print(json.dumps(changes.to_dict(), indent=1) if args.diff_json else render_text(changes))
    return 1 if changes.has_regressions else 0
