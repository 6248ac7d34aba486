"""`mpx conformance`: run the conformance suite, write reports; `mpx conformance diff OLD.json NEW.json`."""

from __future__ import annotations

import argparse

DEFAULT_HTML = "mpx-conformance.html"


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
    add("--workers", type=int, default=2, metavar="N", help="child processes per isolated backend (default 2)")
    add("--json", metavar="PATH", help="write the JSON report (schema mpx-conformance/1)")
    add(
        "--html",
        metavar="PATH",
        help=f"write the single-file HTML report (default {DEFAULT_HTML} when no other report is asked for)",
    )
    add("--markdown", metavar="PATH", help="write the Markdown report")
    add("--junit", metavar="PATH", help="write JUnit XML (one testcase per case id)")
    add("--quiet", action="store_true", help="no progress bar and no summary")
    parser.set_defaults(run=_run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    diff = actions.add_parser("diff", help="compare two JSON reports: improved and regressed cases, scenario changes")
    diff.add_argument("old", metavar="OLD.json")
    diff.add_argument("new", metavar="NEW.json")
    diff.add_argument("--json", dest="diff_json", action="store_true", help="print the diff as JSON")
    diff.set_defaults(run=_diff)


def _run(args: argparse.Namespace) -> int:
    from ..conformance_cli import run

    return run(args)


def _diff(args: argparse.Namespace) -> int:
    from ..conformance_cli import diff

    return diff(args)
