"""Benchmark: the full cpu conformance run, as a user types it, against the bare cost of its cases.

    python benchmarks/bench_conformance.py [--isolated]

Times `mpx conformance --backend cpu --json r.json --html r.html --markdown r.md --junit r.xml` in a fresh
process (interpreter start, imports, every case, the exhaustive accuracy tables, roll-up and four reports) and,
as the anchor measured in the same run, a bare loop over the same op cases in this process: prepare ->
backend.run -> expected -> compare, no suite machinery. Prints both, their ratio (the suite's overhead), the
split of the run (cases, tables, reports, start-up), the model-level cases' share and whether the run meets the
60 s budget. --isolated also times the run in child processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 60.0


def cli_run(folder: Path, *extra: str) -> float:
    argv = [sys.executable, "-m", "mpx", "conformance", "--backend", "cpu", "--quiet", *extra]
    argv += ["--json", str(folder / "r.json"), "--html", str(folder / "r.html"), "--junit", str(folder / "r.xml")]
    argv += ["--markdown", str(folder / "r.md")]
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - start


def split(folder: Path, total: float) -> dict[str, float]:
    """Seconds of the run by part: cases (and roll-up), accuracy tables, reports (rendered again here), start-up."""
    from mpx.conformance.render import html, junit, markdown
    from mpx.conformance.report import Report

    report = Report.load(folder / "r.json")
    start = time.perf_counter()
    for render in (lambda r: r.to_json(), html.render, markdown.render, junit.render):
        render(report)
    reports = time.perf_counter() - start
    suite = float(report.metadata["duration_s"])
    tables = sum(b.accuracy.time_s for b in report.backends if b.accuracy is not None)
    return {"cases": suite - tables, "tables": tables, "reports": reports, "start-up": total - suite - reports}


def bare_loop() -> tuple[float, int]:
    import mpx
    from mpx.conformance.cases import generate
    from mpx.conformance.runner import one_thread
    from mpx.ops import get_op
    from mpx.ops.reference import expected, prepare
    from mpx.ops.tolerance import compare

    backend = mpx.get_backend("cpu")
    cases = [c for c in generate() if not c.is_semantics and not c.is_model]
    start = time.perf_counter()
    with one_thread():  # the same thread setting the suite uses, so the ratio is the suite's own overhead
        for case in cases:
            op, fmt = get_op(case.op), mpx.format(case.format)
            prepared = prepare(op, fmt, case.input_class, case.pass_, case.seed)
            got = backend.run(op, fmt, prepared.storage_inputs, case.pass_, prepared.storage_grad_outputs)
            compare(op, fmt, got, expected(op, fmt, prepared, case.pass_), prepared, case.pass_)
    return time.perf_counter() - start, len(cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isolated", action="store_true", help="also time the run with cases in child processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        suite = cli_run(Path(folder))
        parts = split(Path(folder), suite)
        anchor, count = bare_loop()
        cases = json.loads((Path(folder) / "r.json").read_text())["backends"][0]["cases"]
        model_cases = [c for c in cases if c.get("model")]
        model_s = sum(c["time_s"] for c in model_cases)
        print(f"cases: {count} op cases (+ semantics probes) + {len(model_cases)} model cases")
        print(
            f"mpx conformance --backend cpu (json+html+markdown+junit, accuracy tables, fresh process): {suite:.2f} s"
        )
        print(f"anchor: bare prepare/run/expected/compare loop, same cases, this process: {anchor:.2f} s")
        print(f"ratio suite / anchor: {suite / anchor:.2f}x (anchor: op cases only)")
        print(f"model cases: {model_s:.2f} s, {model_s / suite:.0%} of the run")
        print("split: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items()))
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(f"budget: {suite:.2f} s of {BUDGET_S:.0f} s -> {'OK' if suite <= BUDGET_S else 'OVER BUDGET'}")
        if args.isolated:
            isolated = cli_run(Path(folder), "--isolate")
            print(f"--isolate (2 worker processes): {isolated:.2f} s, ratio to anchor {isolated / anchor:.2f}x")


if __name__ == "__main__":
    main()
