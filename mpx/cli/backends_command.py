"""`mpx backends` and `mpx formats`: what is installed and what it can do."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from ..formats import FORMATS
from ..plugins import list_backends


def register(sub: argparse._SubParsersAction) -> None:
    backends = sub.add_parser("backends", help="list backends, whether they run here, and why not")
    backends.add_argument("--json", action="store_true", help="print JSON instead of a table")
    backends.set_defaults(run=run_backends)
    formats = sub.add_parser("formats", help="list number formats and their properties")
    formats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    formats.set_defaults(run=run_formats)


def run_backends(args: argparse.Namespace) -> int:
    """`mpx backends`: every backend, whether it runs here and why not, and plugins that failed to load."""
    entries = list_backends()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    table = Table(title="mpx backends")
    table.add_column("name", no_wrap=True)
    table.add_column("available", no_wrap=True)
    for column in ("formats", "source", "reason or description"):
        table.add_column(column, overflow="fold")
    for e in entries:
        mark = "[green]yes[/]" if e.available else "[red]no[/]"
        table.add_row(e.name, mark, ", ".join(e.formats), e.source, e.reason or e.description)
    print_table(table)
    return 0


def print_table(table: Table) -> None:
    """Print a table; off a terminal (a pipe, a log, a test) it gets the width it needs instead of 80 columns."""
    console = Console()
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        console = Console(width=max(120, min(needed, 1000)), color_system=None)
    console.print(table)


def format_rows() -> list[dict]:
    """The properties of every format, as plain values (the rows of `mpx formats --json`)."""
    return [
        {
            "name": f.name,
            "bits": f.bits,
            "exponent_bits": f.exponent_bits,
            "mantissa_bits": f.mantissa_bits,
            "max": f.max,
            "min_normal": f.min_normal,
            "min_subnormal": f.min_subnormal,
            "eps": f.eps,
            "has_inf": f.has_inf,
            "torch_dtype": str(f.torch_dtype),
            "onnx_type": f.onnx_type,
            "aliases": list(f.aliases),
        }
        for f in FORMATS
    ]


def run_formats(args: argparse.Namespace) -> int:
    """`mpx formats`: the number formats and their limits."""
    rows = format_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="mpx formats")
    columns = ("name", "bits", "exponent_bits", "mantissa_bits", "max", "min_normal", "min_subnormal", "eps", "has_inf")
    for column in columns:
        table.add_column(column.replace("_bits", ""), justify="right" if column != "name" else "left")
    for row in rows:
        table.add_row(*(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    print_table(table)
    return 0
