"""`mpx backends`: every backend mpx knows, whether it runs here, and why not."""

from __future__ import annotations

import argparse
import json

from mpx.cli._table import plain, print_table
from mpx.plugins.manager import list_backends


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("backends", help="list backends, whether they run here, and why not")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """`mpx backends`: every backend, whether it runs here and why not, and plugins that failed to load."""
    entries = list_backends()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    from rich.table import Table

    table = Table(title="mpx backends")
    table.add_column("name", no_wrap=True)
    table.add_column("available", no_wrap=True)
    for column in ("formats", "source", "reason or description"):
        table.add_column(column, overflow="fold")
    for e in entries:
        mark = "[green]yes[/]" if e.available else "[red]no[/]"
        cells = (e.name, ", ".join(e.formats), e.source, e.reason or e.description)
        name, formats, source, text = (plain(cell) for cell in cells)  # a plugin's strings are not markup
        table.add_row(name, mark, formats, source, text)
    print_table(table)
    return 0
