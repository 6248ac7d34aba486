"""Reading the device statistics back (the one host sync of an inspection) into plain, JSON-ready data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mpx.formats import Format
from mpx.inspection.recorder import Recorder, nonfinite_culprit
from mpx.inspection.stats import (
    EXPONENT_BINS,
    INF_BIN,
    INF_BITS,
    NAN_BIN,
    SIGN_MASK,
    ZERO_BIN,
    float_of_bits,
    overflow_threshold,
)

SCHEMA = "mpx-inspection/1"


def format_entry(fmt: Format) -> dict[str, Any]:
    """A format's range as the report draws it."""
    return {
        "name": fmt.name,
        "max": fmt.max,
        "min_normal": fmt.min_normal,
        "min_subnormal": fmt.min_subnormal,
        "overflow_threshold": overflow_threshold(fmt),
    }


def shares(histogram: dict[int, int], count: int, fmt: Format, shift: int = 0) -> dict[str, float]:
    """Shares of all values that underflow to zero / to a subnormal in fmt after multiplying by 2^shift.

    A value underflows to zero below half fmt's smallest subnormal (the tie itself also rounds to zero: that
    one value at the bin's edge is counted as a subnormal here), and to a subnormal below the smallest normal.
    """
    if count == 0:
        return {"underflow_zero": 0.0, "underflow_subnormal": 0.0}
    zero_below = round(math.log2(fmt.min_subnormal)) - 1
    normal_below = round(math.log2(fmt.min_normal))
    to_zero = sum(n for e, n in histogram.items() if e + shift < zero_below)
    to_subnormal = sum(n for e, n in histogram.items() if zero_below <= e + shift < normal_below)
    return {"underflow_zero": to_zero / count, "underflow_subnormal": to_subnormal / count}


def overflow_share(entry: dict[str, Any], fmt: Format, shift: int = 0) -> float:
    """Share of values past fmt's range (or inf) after multiplying by 2^shift: exact at shift 0 (counted on the
    device); otherwise the bins wholly past max plus, when the largest value would overflow, its whole bin."""
    if entry["count"] == 0:
        return 0.0
    if shift == 0 and fmt.name in entry["overflow_counts"]:
        return (entry["overflow_counts"][fmt.name] + entry["inf"]) / entry["count"]
    threshold = overflow_threshold(fmt)
    top = math.floor(math.log2(threshold)) if math.isfinite(threshold) else 128
    past = sum(n for e, n in entry["histogram"].items() if e + shift > top)
    if (entry["amax"] or 0.0) * 2.0**shift >= threshold:
        past += entry["histogram"].get(top - shift, 0)
    return (past + entry["inf"]) / entry["count"]


def _extremes(recorder: Recorder, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per recorded step and segment: the largest |x| (NaN: not measured or not finite) and smallest non-zero."""
    extremes = recorder.buffers.extremes[:rows].cpu().numpy()
    amax_bits, inverse = extremes[:, 0], extremes[:, 1].astype(np.int64)
    amax = np.where((amax_bits >= 0) & (amax_bits < INF_BITS), float_of_bits(np.clip(amax_bits, 0, None)), np.nan)
    smallest_bits = (1 << 31) - inverse  # inverse <= 0: nothing non-zero measured
    finite = (inverse > 0) & (smallest_bits < INF_BITS)
    smallest = np.where(finite, float_of_bits(np.clip(smallest_bits, 0, SIGN_MASK)), np.inf)
    return amax, smallest.min(axis=0) if rows else np.full(len(recorder.segments), np.inf)


def _first_nonfinite(recorder: Recorder, skipped: list[bool]) -> dict[str, Any] | None:
    """The grad segment that went non-finite first in the last skipped step (any step, inspecting a plain loop)."""
    for step, layout, row in reversed(recorder.buffers.norms):
        if recorder.trainer and not skipped[step]:
            continue
        culprit = nonfinite_culprit(recorder.buffers.norms_of(row, len(layout)), layout, recorder.backward_order)
        if culprit is not None:
            segment = recorder.segments[culprit]
            return {"step": step, "module": segment.module, "parameter": segment.parameter}
    return None


def read(recorder: Recorder) -> dict[str, Any]:
    """Every statistic of the recorder as plain Python data (one device -> host copy of each buffer)."""
    recorder.flush()
    recorder.buffers.compact()
    buffers, steps, rows = recorder.buffers, recorder.step, len(recorder.recorded_steps)
    joint = buffers.joint.view(len(recorder.segments), -1).cpu().numpy()
    histogram, overflow = recorder.buckets.histogram(joint), recorder.buckets.overflow(joint)
    amax_history, smallest = _extremes(recorder, rows)
    skipped = buffers.skipped[:steps].cpu().tolist()
    scales = buffers.scale[:steps].cpu().tolist()
    current_shift = round(math.log2(scales[-1])) if scales and scales[-1] > 0 else 0
    tensors = []
    for index, segment in enumerate(recorder.segments):
        bins = histogram[index].tolist()
        count = sum(bins)
        if count == 0:
            continue
        finite = {b - 127: n for b, n in enumerate(bins[:EXPONENT_BINS]) if n}  # bin 0 (fp32 subnormals): -127
        history = [None if math.isnan(a) else a for a in amax_history[:, index].tolist()]
        measured = [a for a in history if a is not None]
        top = (2.0 ** (max(finite) + 1)) if finite else 0.0  # fallback: every measured step had inf/NaN
        entry = {
            "module": segment.module,
            "kind": segment.kind,
            "parameter": segment.parameter,
            "count": count,
            "zeros": bins[ZERO_BIN],
            "inf": bins[INF_BIN],
            "nan": bins[NAN_BIN],
            "amax": max(measured) if measured else top,
            "min_nonzero": float(smallest[index]) if math.isfinite(smallest[index]) else None,
            "histogram": finite,
            "amax_history": history,
            "overflow_counts": {f.name: int(overflow[index, i]) for i, f in enumerate(recorder.formats)},
        }
        entry["formats"] = {
            f.name: {**shares(finite, count, f), "overflow": overflow_share(entry, f)} for f in recorder.formats
        }
        if segment.kind == "grad" and current_shift:  # before unscaling: at the current loss scale
            entry["formats_at_loss_scale"] = {
                f.name: {**shares(finite, count, f, current_shift), "overflow": overflow_share(entry, f, current_shift)}
                for f in recorder.formats
            }
        tensors.append(entry)
    return {
        "schema": SCHEMA,
        "formats": [format_entry(f) for f in recorder.formats],
        "every": recorder.every,
        "steps": steps,
        "recorded_steps": list(recorder.recorded_steps),
        "loss_scale": scales,
        "skipped": skipped,
        "first_nonfinite": _first_nonfinite(recorder, skipped),
        "modules": [{"name": name, "type": kind} for name, kind in recorder.module_types.items()],
        "tensors": tensors,
        "unmeasured": dict(recorder.buffers.unmeasured),  # tensors (or a step's forward) left out, by reason
    }


def as_made(entry: dict[str, Any]) -> dict[str, Any]:
    """A tensor's per-format shares as the step held it: gradients at the loss scale, the rest as they are."""
    return entry.get("formats_at_loss_scale", entry["formats"])


def format_summary(data: dict[str, Any], threshold: float) -> list[tuple[str, list[str], list[str]]]:
    """Per format: the modules whose outputs, weights or gradients (as the step held them) overflow, and those
    losing more than `threshold` of them to zero."""
    checked = [t for t in data["tensors"] if t["kind"] in ("output", "weight", "grad")]
    rows = []
    for fmt in data["formats"]:
        name = fmt["name"]
        over = [t["module"] for t in checked if as_made(t)[name]["overflow"] > 0]
        under = [t["module"] for t in checked if as_made(t)[name]["underflow_zero"] > threshold]
        rows.append((name, list(dict.fromkeys(over)), list(dict.fromkeys(under))))
    return rows
