"""`mpx train`: train a small MLP with a backend and precision preset."""

from __future__ import annotations

import argparse

from ..policy import PRESETS


def _loss_scale(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train an MLP on a synthetic regression task")
    parser.add_argument("--backend", default="cpu", help="backend name (see 'mpx backends'); default cpu")
    parser.add_argument("--precision", default="bf16-mixed", metavar="PRESET",
                        help=f"precision policy: {', '.join(PRESETS)} or 'params=..,compute=..,output=..'")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, weights and batch order")
    parser.add_argument("--json", metavar="PATH", help="write the summary as JSON (key final_loss, ...)")
    parser.add_argument("--compare-fp32", action="store_true", help="also train in fp32 on the same seed")
    parser.add_argument("--no-master-weights", action="store_true",
                        help="step low-precision parameters directly (shows why masters matter)")
    parser.add_argument("--loss-scale", type=_loss_scale, default=None,
                        help="dynamic, static, none or a number (default: the policy's choice)")
    parser.add_argument("--state-formats", choices=("fp32", "lean"), default="fp32",
                        help="optimizer state: fp32, or lean (bf16 grads and Adam m, fp32 v: 12 bytes/param)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128, help="hidden width of the MLP")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from ..train_cli import run

    return run(args)
