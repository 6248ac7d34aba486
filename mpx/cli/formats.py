"""`mpx formats`: the number formats and their limits (the table the README shows)."""

from __future__ import annotations

import argparse
import json

from mpx.cli._table import print_table
from mpx.formats import FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("formats", help="list number formats and their properties")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


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


def run(args: argparse.Namespace) -> int:
    """`mpx formats`: the number formats and their limits."""
    rows = format_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table(title="mpx formats")
    columns = ("name", "bits", "exponent_bits", "mantissa_bits", "max", "min_normal", "min_subnormal", "eps", "has_inf")
    for column in columns:
        table.add_column(column.replace("_bits", ""), justify="right" if column != "name" else "left")
    for row in rows:
        table.add_row(*(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    print_table(table)
    return 0
