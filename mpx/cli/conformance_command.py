"""`mpx conformance`: run the conformance suite, write reports, diff two reports."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("conformance", help="run every op of a backend in every format against the reference")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from ..conformance_cli import run  # written with the conformance suite

    return run(args)
