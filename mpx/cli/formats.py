"""`mpx formats`: the number formats and their limits; `--markdown` prints the table the README shows."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from mpx.cli._table import print_table
from mpx.formats import FORMATS, Format

COLUMNS = ("name", "aliases", "bits", "exp", "mantissa", "max", "min normal", "min subnormal", "eps", "overflow")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("formats", help="list number formats and their properties")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (exact numbers) instead of a table")
    output.add_argument("--markdown", action="store_true", help="print the table as Markdown (as in the README)")
    parser.set_defaults(run=run)


def format_rows() -> list[dict[str, Any]]:
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


def _power_of_two(value: float) -> str:
    return f"2^{int(math.log2(value))}"


def table_cells(fmt: Format) -> tuple[str, ...]:
    """One row of the table, as text: the README's and the terminal's are the same cells."""
    largest = f"{fmt.max:.0f}" if fmt.max < 1e6 else f"{fmt.max:.2e}".replace("e+", "e")
    return (
        fmt.name,
        ", ".join(fmt.aliases),
        str(fmt.bits),
        str(fmt.exponent_bits),
        str(fmt.mantissa_bits),
        largest,
        _power_of_two(fmt.min_normal),
        _power_of_two(fmt.min_subnormal),
        _power_of_two(fmt.eps),
        "inf" if fmt.has_inf else "NaN (no inf)",
    )


def markdown_table() -> str:
    """The formats table in Markdown, exactly as the README carries it."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for fmt in FORMATS:
        name, *rest = table_cells(fmt)
        lines.append("| " + " | ".join([f"`{name}`", *rest]) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """`mpx formats`: the number formats and their limits."""
    if args.json:
        print(json.dumps(format_rows(), indent=2))
        return 0
    if args.markdown:
        print(markdown_table())
        return 0
    from rich.table import Table

    table = Table(title="mpx formats")
    for index, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if index < 2 else "right")
    for fmt in FORMATS:
        table.add_row(*table_cells(fmt))
    print_table(table)
    return 0
