"""Inline SVG plots of the inspection report: log2|x| histograms over the formats' ranges, and step series."""

from __future__ import annotations

import math
from html import escape
from typing import Any

WIDTH, PAD, RIGHT, LANE = 380, 28, 52, 9
COLOURS = {"fp16": "#1e88e5", "bf16": "#43a047", "fp8_e4m3": "#fb8c00", "fp8_e5m2": "#8e24aa", "fp32": "#757575"}
BAR, LINE, SKIP = "#37474f", "#1565c0", "#e53935"


def colour(name: str) -> str:
    return COLOURS.get(name, "#607d8b")


def _open(kind: str, height: int, label: str) -> str:
    return (
        f"<svg class='plot' data-plot='{kind}' width='{WIDTH}' height='{height}' viewBox='0 0 {WIDTH} {height}' "
        f"role='img' aria-label='{escape(label)}'><title>{escape(label)}</title>"
        f"<rect x='0' y='0' width='{WIDTH}' height='{height}' fill='#fff' stroke='#ddd'/>"
    )


def histogram(entry: dict[str, Any], formats: list[dict[str, Any]], label: str) -> str:
    """Bars: share of the tensor's values per power of two; under them one lane per format: normal range
    (solid), subnormal band (pale) and, past max, nothing."""
    exponents = sorted(entry["histogram"])
    low = min([*exponents, -26]) - 1
    high = max([*exponents, 17]) + 2
    top, bars_height = 8, 70
    lanes_top = top + bars_height + 14
    height = lanes_top + LANE * len(formats) + 6
    span = WIDTH - PAD - RIGHT

    def x(exponent: float) -> float:
        return PAD + span * (min(max(exponent, low), high) - low) / (high - low)

    peak = max(entry["histogram"].values(), default=1)
    out = [_open("histogram", height, label), "<g class='data'>"]
    for exponent, count in entry["histogram"].items():
        h = max(1.0, bars_height * count / peak)
        out.append(
            f"<rect x='{x(exponent):.1f}' y='{top + bars_height - h:.1f}' width='{max(span / (high - low) - 1, 1):.1f}'"
            f" height='{h:.1f}' fill='{BAR}'><title>2^{exponent}: {count} values</title></rect>"
        )
    if not entry["histogram"]:
        note = "every value is 0 or not finite"
        out.append(f"<text x='{WIDTH / 2}' y='{top + 30}' font-size='10' text-anchor='middle'>{note}</text>")
    out.append("</g>")
    base = top + bars_height
    out.append(f"<line x1='{PAD}' y1='{base}' x2='{WIDTH - RIGHT}' y2='{base}' stroke='#999'/>")
    for tick in range(math.ceil(low / 8) * 8, high + 1, 8):
        out.append(
            f"<text x='{x(tick):.1f}' y='{base + 11}' font-size='9' text-anchor='middle' fill='#555'>2^{tick}</text>"
        )
    for row, fmt in enumerate(formats):
        y = lanes_top + row * LANE
        sub, normal, top_edge = (math.log2(fmt[k]) for k in ("min_subnormal", "min_normal", "max"))
        c = colour(fmt["name"])
        out.append(
            f"<g class='range' data-format='{escape(fmt['name'])}'>"
            f"<rect class='subnormal' x='{x(sub - 1):.1f}' y='{y}' width='{x(normal) - x(sub - 1):.1f}' "
            f"height='{LANE - 2}' fill='{c}' fill-opacity='0.3'/>"
            f"<rect class='normal' x='{x(normal):.1f}' y='{y}' width='{x(top_edge + 1) - x(normal):.1f}' "
            f"height='{LANE - 2}' fill='{c}' fill-opacity='0.8'/>"
            f"<text x='{WIDTH - RIGHT + 4}' y='{y + 7}' font-size='8' fill='{c}'>{escape(fmt['name'])}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)


def series(kind: str, values: list[float | None], steps: list[int], label: str, marks: list[int] | None = None) -> str:
    """A log2-scale line of `values` over `steps` (None: not measured), red ticks at the `marks` steps."""
    height = 90
    points = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None and v > 0 and math.isfinite(v)]
    logs = [math.log2(v) for _, v in points] or [0.0]
    low, high = min(logs) - 0.5, max(logs) + 0.5
    first, last = (steps[0], steps[-1]) if steps else (0, 1)

    def x(step: float) -> float:
        return 44 + (WIDTH - 44 - PAD) * (step - first) / max(last - first, 1)

    def y(log: float) -> float:
        return 8 + (height - 26) * (high - log) / (high - low)

    out = [_open(kind, height, label), "<g class='data'>"]
    coordinates = " ".join(f"{x(s):.1f},{y(math.log2(v)):.1f}" for s, v in points)
    if len(points) == 1:
        out.append(f"<circle cx='{x(points[0][0]):.1f}' cy='{y(logs[0]):.1f}' r='2.5' fill='{LINE}'/>")
    elif points:
        out.append(f"<polyline fill='none' stroke='{LINE}' stroke-width='1.5' points='{coordinates}'/>")
    for step in marks or []:
        out.append(
            f"<line class='skip' x1='{x(step):.1f}' y1='8' x2='{x(step):.1f}' y2='{height - 18}' stroke='{SKIP}'>"
            f"<title>step {step} skipped</title></line>"
        )
    out.append("</g>")
    out.append(f"<text x='4' y='14' font-size='9' fill='#555'>{2 ** (high - 0.5):.3g}</text>")
    out.append(f"<text x='4' y='{height - 20}' font-size='9' fill='#555'>{2 ** (low + 0.5):.3g}</text>")
    out.append(
        f"<text x='{WIDTH - PAD}' y='{height - 4}' font-size='9' text-anchor='end' fill='#555'>step {last}</text>"
    )
    out.append(f"<text x='44' y='{height - 4}' font-size='9' fill='#555'>step {first}</text></svg>")
    return "".join(out)
