"""A short terminal summary of an inspection (rich): what overflows or underflows where, and what to do."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mpx.inspection.readout import format_summary


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:6]) + (f" (+{len(names) - 6})" if len(names) > 6 else "")
    return escape(shown) if names else "[green]none[/]"


def print_summary(data: dict[str, Any], console: Console | None = None) -> None:
    """Per format the overflowing and underflowing modules, then the loss-scale window and keep_fp32 lists."""
    console = console or Console()
    recommendations = data["recommendations"]
    threshold = recommendations["threshold"]
    table = Table(title=f"mpx inspect: {data['steps']} steps, {sum(data['skipped'])} skipped")
    for column in ("format", "overflowing", f"underflowing to zero (> {threshold:.1%})"):
        table.add_column(column)
    for name, over, under in format_summary(data, threshold):
        table.add_row(name, _names(over), _names(under))
    console.print(table)
    found = data["first_nonfinite"]
    if found:
        where = escape(f"{found['module']}.{found['parameter']}")
        console.print(f"[red]step {found['step']}: first non-finite gradient in[/] {where}")
    for reason, count in data.get("unmeasured", {}).items():
        console.print(f"[yellow]not measured ({count}):[/] {escape(reason)}")
    window = recommendations["loss_scale"]
    if window["window"]:
        low, high = window["window"]
        console.print(f"fp16 loss scale window {low:g} .. {high:g}, recommended {window['recommended']:g}")
    else:
        console.print(f"[yellow]no fp16 loss scale fits:[/] {escape(window['reason'])}")
    for fmt, names in recommendations["keep_fp32"].items():
        if names:
            console.print(f"{fmt} compute: keep_fp32={escape(json.dumps(names))}")
