"""What the statistics advise: the narrowest format per module, the loss-scale window, fp8 headroom, keep_fp32.

The rule (DEFAULT_THRESHOLD): a tensor fits a format when at most 0.1 % of its values would be lost in it,
lost meaning rounded to zero (underflow) or past the largest finite value (overflow). Subnormals are kept
values (with fewer bits), so they do not count as lost. fp16 and bf16 are judged on the values as they are,
gradients at the recommended loss scale; fp8 formats are judged as they are used, with a per-tensor
power-of-two scale that puts the tensor's amax just under the format's max (Transformer Engine's recipe with
margin 0).
"""

from __future__ import annotations

import math
from typing import Any

from mpx.formats import FP16, FP32, Format
from mpx.formats import format as lookup_format
from mpx.inspection.readout import overflow_share, shares
from mpx.inspection.stats import overflow_threshold

DEFAULT_THRESHOLD = 1e-3
FORWARD_KINDS = ("input", "output", "weight")
SHIFTS = range(-160, 160)  # powers of two a loss scale or an fp8 scale may take


def lost(entry: dict[str, Any], fmt: Format, shift: int = 0) -> float:
    """Share of the tensor's finite values lost (to zero or past max) in fmt after multiplying by 2^shift.

    Values already inf/NaN (a skipped step's gradients) say what the run's own format did, not what the tensor
    needs, so they do not count against any format.
    """
    past = overflow_share(entry, fmt, shift) - entry["inf"] / max(entry["count"], 1)
    return shares(entry["histogram"], entry["count"], fmt, shift)["underflow_zero"] + past


def fp8_shift(amax: float, fmt: Format) -> int:
    """log2 of the power-of-two scale that maps amax to just under fmt's max (0 for an all-zero tensor)."""
    if amax <= 0:
        return 0
    return math.floor(math.log2(fmt.max / amax))


def loss_scale_window(tensors: list[dict[str, Any]], threshold: float, fmt: Format = FP16) -> dict[str, Any]:
    """Powers of two of the loss scale that keep the gradients inside fmt: no overflow, underflow <= threshold."""
    grads = [t for t in tensors if t["kind"] == "grad"]
    count = sum(t["count"] for t in grads)
    if not grads or count == 0:
        return {"format": fmt.name, "window": None, "recommended": None, "reason": "no gradients were recorded"}
    histogram: dict[int, int] = {}
    for t in grads:
        for e, n in t["histogram"].items():
            histogram[e] = histogram.get(e, 0) + n
    if not histogram:
        return {"format": fmt.name, "window": None, "recommended": None, "reason": "every gradient was 0 or inf/NaN"}
    amax = max(t["amax"] for t in grads)
    fits = [s for s in SHIFTS if shares(histogram, count, fmt, s)["underflow_zero"] <= threshold]
    low = fits[0] if fits else None
    high = SHIFTS[-1] if amax == 0 else math.floor(math.log2(overflow_threshold(fmt) / amax))
    if amax > 0 and amax * 2.0**high >= overflow_threshold(fmt):
        high -= 1
    if low is None or low > high:
        return {
            "format": fmt.name,
            "window": None,
            "recommended": None,
            "reason": f"the gradients span more than {fmt.name}'s range: no loss scale keeps both ends; train in bf16",
        }
    recommended = max(low, high - 1)  # one power of two of headroom for amax drifting up
    return {
        "format": fmt.name,
        "window": [2.0**low, 2.0**high],
        "recommended": 2.0**recommended,
        "reason": f"gradients span 2^{min(histogram)}..{amax:.3g}",
    }


def _fits(entry: dict[str, Any], fmt: Format, threshold: float, loss_shift: int | None) -> bool:
    if fmt.is_fp8:
        return lost(entry, fmt, fp8_shift(entry["amax"], fmt)) <= threshold
    if entry["kind"] in FORWARD_KINDS:
        return lost(entry, fmt) <= threshold
    if fmt.name == "fp16":
        return loss_shift is not None and lost(entry, fmt, loss_shift) <= threshold
    return lost(entry, fmt) <= threshold


def _candidates(formats: list[Format]) -> list[Format]:
    """Narrowest first: fewer bits, then more mantissa (e4m3 before e5m2, fp16 before bf16); fp32 last."""
    chosen = {f.name: f for f in formats} | {"fp32": FP32}
    return sorted(chosen.values(), key=lambda f: (f.bits, f.exponent_bits))


def recommend(data: dict[str, Any], threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The recommendations of a readout (see the module docstring for the rule)."""
    tensors = data["tensors"]
    formats = [lookup_format(f["name"]) for f in data["formats"]]
    window = loss_scale_window(tensors, threshold)
    loss_shift = None if window["recommended"] is None else round(math.log2(window["recommended"]))
    judged = tensors
    modules: dict[str, dict[str, Any]] = {}
    for fmt in reversed(_candidates(formats)):  # widest first, so each narrower fit overwrites
        for entry in judged:
            row = modules.setdefault(entry["module"], {"format": "fp32", "failing": {}})
            if not _fits(entry, fmt, threshold, loss_shift):
                row["failing"].setdefault(fmt.name, []).append(f"{entry['kind']} {entry['parameter']}".strip())
        for row in modules.values():
            if fmt.name not in row["failing"]:
                row["format"] = fmt.name
    keep = {
        f.name: [
            name
            for name, row in modules.items()
            if name and any(k.split()[0] in FORWARD_KINDS for k in row["failing"].get(f.name, []))
        ]
        for f in formats
        if not f.is_fp8 and f.bits < 32
    }
    headroom = [
        {
            "module": t["module"],
            "kind": t["kind"],
            "parameter": t["parameter"],
            "format": f.name,
            "amax": t["amax"],
            "headroom_bits": math.log2(f.max / t["amax"]) if t["amax"] > 0 else None,
            "scale": 2.0 ** fp8_shift(t["amax"], f),
            "drift_bits": _drift(t["amax_history"]),
            "lost_at_scale": lost(t, f, fp8_shift(t["amax"], f)),
        }
        for t in judged
        for f in formats
        if f.is_fp8
    ]
    return {
        "threshold": threshold,
        "modules": modules,
        "loss_scale": window,
        "keep_fp32": keep,
        "fp8_headroom": headroom,
    }


def _drift(history: list[float | None]) -> float | None:
    """The most a tensor's amax grew past everything before it, in powers of two (what a delayed fp8 scale must
    hold as margin); None with fewer than two measured steps."""
    values = [a for a in history if a is not None and a > 0]
    if len(values) < 2:
        return None
    peak, most = values[0], -math.inf
    for a in values[1:]:
        most = max(most, math.log2(a / peak))
        peak = max(peak, a)
    return most
