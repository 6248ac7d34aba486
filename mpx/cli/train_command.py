"""`mpx train`: train a small MLP with a backend and precision preset."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train an MLP on a synthetic regression task")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from ..train_cli import run  # written with the trainer

    return run(args)
