"""Loss curves of the model-level training cases as inline SVG (a format's run against fp32; no external assets)."""

from __future__ import annotations

import math

from ..report import BackendReport, CaseResult
from .sanitize import html as escape

WIDTH, HEIGHT, PAD = 240, 120, 6
FORMAT_COLOUR, FP32_COLOUR = "#1e88e5", "#9e9e9e"


def _points(values: tuple[float, ...], low: float, high: float, steps: int) -> str:
    span = (high - low) or 1.0
    points = []
    for index, value in enumerate(values):
        if not math.isfinite(value):
            continue  # a diverged step leaves a gap in the line: the case's detail says why
        x = PAD + (WIDTH - 2 * PAD) * index / max(steps - 1, 1)
        y = PAD + (HEIGHT - 2 * PAD) * (high - value) / span
        points.append(f"{x:.1f},{y:.1f}")
    return " ".join(points)


def svg(case: CaseResult) -> str:
    """One training case's two loss curves on shared axes, the format's solid, fp32's dashed."""
    finite = [v for v in (*case.curve, *case.fp32_curve) if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    steps = max(len(case.curve), len(case.fp32_curve))
    label = f"{case.id}: loss per step, {case.format} (solid) vs fp32 (dashed)"
    return (
        f"<svg class='curve' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img' data-case='{escape(case.id)}' aria-label='{escape(label)}'>"
        f"<title>{escape(label)}</title>"
        f"<rect x='0' y='0' width='{WIDTH}' height='{HEIGHT}' fill='#fff' stroke='#ccc'/>"
        f"<polyline class='fp32' fill='none' stroke='{FP32_COLOUR}' stroke-width='2' stroke-dasharray='4 3' "
        f"points='{_points(case.fp32_curve, low, high, steps)}'/>"
        f"<polyline class='format' fill='none' stroke='{FORMAT_COLOUR}' stroke-width='1.5' "
        f"points='{_points(case.curve, low, high, steps)}'/>"
        f"<text x='{WIDTH - PAD}' y='{PAD + 10}' text-anchor='end' font-size='10'>{high:.3g}</text>"
        f"<text x='{WIDTH - PAD}' y='{HEIGHT - PAD}' text-anchor='end' font-size='10'>{low:.3g}</text>"
        "</svg>"
    )


def section(backends: list[BackendReport]) -> str:
    """Per backend, a figure per training case with a loss curve: the SVG and the case's status and detail."""
    out = []
    for backend in backends:
        cases = [c for c in backend.cases if c.model and (c.curve or c.fp32_curve)]
        if not cases:
            continue
        out.append(f"<div class='curves' data-backend='{escape(backend.name)}'>")
        for case in cases:
            out.append(
                f"<figure class='curve' data-backend='{escape(backend.name)}' data-status='{case.status}'>"
                f"{svg(case)}<figcaption><span class='s-{case.status}'>{case.status}</span> "
                f"<code>{escape(case.id)}</code><br>{escape(case.detail)}</figcaption></figure>"
            )
        out.append("</div>")
    return "".join(out) or "<p class='meta'>no model training cases in this report</p>"
