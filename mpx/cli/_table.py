"""Printing a rich table the same way in every command."""

from __future__ import annotations

from typing import Any


def plain(text: Any) -> str:
    """`text` (a plugin's name, reason or description) as a cell that prints as written: markup escaped, no
    lone surrogates or control characters, so '[/]' or '[red]' from a plugin neither crashes nor colours."""
    from mpx.conformance.render.sanitize import markup

    return markup(text)


def print_table(table: Any) -> None:
    """Print a table; off a terminal (a pipe, a log, a test) it gets the width it needs instead of 80 columns.

    A string cell that is not valid rich markup (a plugin's '[/]' that its command did not escape with
    `plain`) is printed as literal text instead of stopping the command.
    """
    from rich.console import Console

    _literal_bad_markup(table)
    console = Console()
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        console = Console(width=max(120, min(needed, 1000)), color_system=None)
    console.print(table)


def _literal_bad_markup(table: Any) -> None:
    from rich.errors import MarkupError
    from rich.markup import render
    from rich.text import Text

    for column in getattr(table, "columns", ()):
        cells = getattr(column, "_cells", None)
        if not isinstance(cells, list):
            continue
        for index, cell in enumerate(cells):
            if not isinstance(cell, str):
                continue
            safe = cell.encode("utf-8", "replace").decode("utf-8")
            try:
                render(safe)
            except MarkupError:
                cells[index] = Text(safe)
                continue
            if safe != cell:
                cells[index] = safe
