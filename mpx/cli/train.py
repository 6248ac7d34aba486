"""`mpx train`: train a small MLP with a backend and precision preset, print a summary, optionally write JSON."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from mpx._io import atomic_write_text, check_writable
from mpx.cli._arguments import output_path, positive_integer, positive_number, seed
from mpx.errors import MpxError
from mpx.policy import PRESETS

if TYPE_CHECKING:  # a type only: the CLI parses arguments without importing torch
    from mpx.training.synthetic import TrainSummary


def _loss_scale(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def report_path(text: str) -> str:
    """A report path whose suffix says HTML or JSON."""
    if not text.lower().endswith((".html", ".htm", ".json")):
        raise argparse.ArgumentTypeError(f"{text!r}: name the report .html or .json")
    return output_path(text)


def _inspection_writer(path: str) -> Any:
    def write(report: Any) -> None:
        report.save(path)
        report.print_summary()
        print(f"numerics report: {path}")

    return write


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train an MLP on a synthetic regression task")
    parser.add_argument(
        "--backend",
        default="cpu",
        help="backend name (see 'mpx backends'), e.g. cpu, cuda, onnxrt or onnxrt:<ExecutionProvider>; default cpu",
    )
    parser.add_argument(
        "--precision",
        default="bf16-mixed",
        metavar="PRESET",
        help=f"precision policy: {', '.join(PRESETS)} or 'params=..,compute=..,output=..'",
    )
    parser.add_argument("--steps", type=positive_integer, default=200, help="optimizer steps (default 200)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of data, weights and batch order")
    parser.add_argument(
        "--json", type=output_path, metavar="PATH", help="write the summary as JSON (key final_loss, ...)"
    )
    parser.add_argument("--compare-fp32", action="store_true", help="also train in fp32 on the same seed")
    parser.add_argument(
        "--no-master-weights",
        action="store_true",
        help="step low-precision parameters directly (shows why masters matter)",
    )
    parser.add_argument(
        "--loss-scale",
        type=_loss_scale,
        default=None,
        help="dynamic, static, none or a number (default: the policy's choice)",
    )
    parser.add_argument(
        "--state-formats",
        choices=("fp32", "lean"),
        default="fp32",
        help="optimizer state: fp32, or lean (bf16 grads and Adam m, fp32 v: 12 bytes/param)",
    )
    parser.add_argument("--lr", type=positive_number, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--batch-size", type=positive_integer, default=128)
    parser.add_argument("--hidden", type=positive_integer, default=128, help="hidden width of the MLP")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--nproc", type=positive_integer, default=1, help="local ranks to train on (default 1)")
    parser.add_argument(
        "--parallel",
        choices=("ddp", "fsdp"),
        help="with --nproc N or under torchrun: data-parallel (DistributedDataParallel) or sharded (FSDP2)",
    )
    parser.add_argument("--dist-backend", choices=("gloo", "nccl"), help="default: nccl for cuda, else gloo")
    parser.add_argument(
        "--inspect",
        type=report_path,
        metavar="PATH",
        help="record per-layer numerics and write the report (PATH.html or PATH.json); one process only",
    )
    parser.set_defaults(run=run)


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{name} x{n}" if isinstance(n, int) else str(name) for name, n in counts.items())


def _gemms(graph: dict[str, Any]) -> str:
    """Each GEMM op's dtypes as onnxruntime ran it, and as the exported graph declared it where that differs."""
    cells = []
    for op, counts in graph.get("gemm_dtypes", {}).items():
        ran = "/".join(f"{n}x{dtype}" for dtype, n in counts.items())
        declared = "/".join(graph.get("gemm_dtypes_in_graph", {}).get(op, {}))
        cells.append(f"{op} {ran}" + (f" (exported {declared})" if declared and declared != "/".join(counts) else ""))
    return "; ".join(cells) or "-"


def placement_lines(placement: list[dict[str, Any]]) -> list[str]:
    """mp.placement() as text: per graph, its nodes, the share the EP ran, the GEMMs' real dtypes, what moved."""
    providers = sorted({str(p.get("provider", "?")) for p in placement if p.get("kind") != "eager"})
    lines = [f"placement on {', '.join(providers)}:"]
    for graph in placement:
        if graph.get("kind") == "eager":
            runs, reason = graph.get("runs"), graph.get("reason")
            lines.append(f"  eager: {runs} model calls ran as torch code on the host ({reason})")
            continue
        share = graph.get("share_on_provider")
        on_ep = "EP share unknown" if share is None else f"{100 * share:.0f}% on EP"
        parts = [
            f"{graph.get('nodes', '?')} nodes, {on_ep}",
            f"GEMMs ran as {_gemms(graph)}" if graph.get("gemm_dtypes") else "",
            f"fell back: {_counts(graph['fallback_ops'])}" if graph.get("fallback_ops") else "",
            f"upcast: {_counts(graph['upcast_ops'])}" if graph.get("upcast_ops") else "",
            f"decomposed: {', '.join(graph['decomposed_ops'])}" if graph.get("decomposed_ops") else "",
        ]
        lines.append(f"  {graph.get('graph', '?')}: " + "; ".join(p for p in parts if p))
    if not any(g.get("kind") in ("forward", "backward") for g in placement):
        lines.append("  (no model graph was compiled: the model ran as torch code on the host)")
    return lines


def run(args: argparse.Namespace) -> int:
    """The `mpx train` command: train, print a summary, optionally write JSON."""
    from rich.console import Console
    from rich.table import Table

    from mpx.training.synthetic import train

    if args.json:
        check_writable(args.json, "--json summary")  # before training, not after
    if args.inspect:
        check_writable(args.inspect, "--inspect report")
    options = dict(
        steps=args.steps,
        seed=args.seed,
        lr=args.lr,
        batch_size=args.batch_size,
        hidden=args.hidden,
        loss_scale=args.loss_scale,
        state_recipe=args.state_formats,
    )
    if args.nproc > 1 or args.parallel:
        if args.inspect:
            raise MpxError("--inspect records one process: drop --nproc/--parallel, or inspect a 1-process run")
        summary = _distributed(args, options)
        if summary is None:
            return 0  # a rank other than 0 under torchrun: rank 0 reports
    else:
        summary = train(
            args.backend,
            args.precision,
            master_weights=not args.no_master_weights,
            progress=not args.no_progress,
            inspect=_inspection_writer(args.inspect) if args.inspect else None,
            **options,
        )
    fp32 = train(args.backend, "fp32", progress=not args.no_progress, **options) if args.compare_fp32 else None
    title = f"mpx train: {summary.precision} on {summary.backend}, {summary.steps} steps, seed {summary.seed}"
    table = Table(title=title)
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("final loss", f"{summary.final_loss:.6g}")
    if fp32 is not None:
        table.add_row("fp32 final loss (same seed)", f"{fp32.final_loss:.6g}")
        table.add_row("relative difference", f"{(summary.final_loss - fp32.final_loss) / fp32.final_loss:+.2%}")
    table.add_row("steps skipped", str(summary.steps_skipped))
    table.add_row("final loss scale", f"{summary.final_scale:g}")
    table.add_row("step time", f"{summary.step_time_ms:.2f} ms")
    table.add_row("first step (compiles)", f"{summary.first_step_ms:.0f} ms")
    table.add_row("bytes / parameter", f"{summary.bytes_per_param:.2f}")
    table.add_row("master weights", "yes" if summary.master_weights else "no")
    if summary.world_size > 1:
        table.add_row("ranks", f"{summary.world_size} ({summary.parallel})")
    console = Console()
    console.print(table)
    if summary.placement:
        console.print("\n".join(placement_lines(summary.placement)), highlight=False, markup=False, soft_wrap=True)
    if args.json:
        result = asdict(summary)
        if fp32 is not None:
            result["fp32_final_loss"] = fp32.final_loss
        try:
            atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        except OSError as error:
            raise MpxError(f"cannot write --json {args.json}: {error.strerror}") from error
    return 0


def _distributed(args: argparse.Namespace, options: dict) -> TrainSummary | None:
    """--nproc N local ranks, or this process as the rank torchrun started; None on ranks other than 0."""
    from mpx.distributed import launch

    if args.no_master_weights:
        raise MpxError("--no-master-weights trains one process only; drop it or --nproc/--parallel")
    parallel = args.parallel or "ddp"
    dist_backend = args.dist_backend or launch.default_dist_backend(args.backend)
    options = dict(options, backend=args.backend, precision=args.precision, parallel=parallel)
    if launch.under_torchrun() and args.nproc == 1:
        return launch.torchrun_training(dist_backend, **options)
    launch.check_launch(args.nproc, dist_backend, parallel, args.precision, args.batch_size)
    return launch.spawn_training(args.nproc, dist_backend, **options)
