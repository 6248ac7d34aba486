"""Printing a rich table the same way in every command."""

from __future__ import annotations

from typing import Any


def print_table(table: Any) -> None:
    """Print a table; off a terminal (a pipe, a log, a test) it gets the width it needs instead of 80 columns."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        console = Console(width=max(120, min(needed, 1000)), color_system=None)
    console.print(table)
