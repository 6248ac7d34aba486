"""InspectionReport: what `mpx.inspect` and `MixedPrecision(inspect=True)` give back, and its questions."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from mpx.errors import InspectionError
from mpx.formats import format as lookup_format
from mpx.inspection.readout import as_made, read, shares
from mpx.inspection.recommend import DEFAULT_THRESHOLD, recommend
from mpx.inspection.recorder import KINDS, Recorder

CHECKED_KINDS = ("output", "weight", "grad")  # what a module makes; its inputs are its producer's outputs


@dataclass(frozen=True)
class NonFinite:
    """Where a skipped step's gradients first went non-finite, in backward order."""

    module: str
    parameter: str
    step: int


def _kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InspectionError(f"unknown tensor kind {unknown[0]!r}; the kinds are {', '.join(KINDS)}")
    return kinds


class InspectionReport:
    """Per-module numerics of a model, read from the device when asked (each question syncs once)."""

    def __init__(self, recorder: Recorder, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.recorder, self.threshold = recorder, threshold

    def __enter__(self) -> InspectionReport:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop recording (the hooks come off the model); the statistics stay readable."""
        self.recorder.flush()
        self.recorder.remove()

    def data(self) -> dict[str, Any]:
        """Everything recorded, with the recommendations, as plain data (what save() writes as JSON)."""
        data = read(self.recorder)
        data["recommendations"] = recommend(data, self.threshold)
        return data

    def _format(self, fmt: str) -> str:
        name = lookup_format(fmt).name
        if name not in {f.name for f in self.recorder.formats}:
            known = ", ".join(f.name for f in self.recorder.formats)
            raise InspectionError(f"{name} was not inspected (formats: {known}); pass it in formats=")
        return name

    def overflowing(self, fmt: str, threshold: float = 0.0, kinds: tuple[str, ...] = CHECKED_KINDS) -> list[str]:
        """Modules with more than `threshold` of some tensor's values past fmt's max (or inf), in model order.

        Gradients count as the backward pass made them: at the run's current loss scale.
        """
        name, kinds = self._format(fmt), _kinds(kinds)
        tensors = [t for t in read(self.recorder)["tensors"] if t["kind"] in kinds]
        return _modules(t for t in tensors if as_made(t)[name]["overflow"] > threshold)

    def underflowing(
        self,
        fmt: str,
        threshold: float = DEFAULT_THRESHOLD,
        kinds: tuple[str, ...] = CHECKED_KINDS,
        *,
        to: str = "zero",
        loss_scale: float | None = None,
    ) -> list[str]:
        """Modules with more than `threshold` of some tensor's values underflowing in fmt, in model order.

        to="zero" counts values that round to zero, to="subnormal" also those that keep fewer bits. Gradients
        are taken at `loss_scale` (a power of two; None: the run's current scale, 1 for a plain loop).
        """
        if to not in ("zero", "subnormal"):
            raise InspectionError(f"to must be 'zero' or 'subnormal', not {to!r}")
        name, kinds = self._format(fmt), _kinds(kinds)
        data = read(self.recorder)
        shift = _shift(data, loss_scale)
        chosen = []
        for t in data["tensors"]:
            if t["kind"] in kinds:
                share = shares(t["histogram"], t["count"], lookup_format(name), shift if t["kind"] == "grad" else 0)
                if share["underflow_zero"] + (share["underflow_subnormal"] if to == "subnormal" else 0) > threshold:
                    chosen.append(t)
        return _modules(chosen)

    def gradient_underflow(self, fmt: str = "fp16", loss_scale: float | None = None) -> dict[str, float]:
        """Per module, the share of its gradient values that round to zero in fmt at `loss_scale` (as above)."""
        name = self._format(fmt)
        data = read(self.recorder)
        shift, totals = _shift(data, loss_scale), {}
        for t in data["tensors"]:
            if t["kind"] == "grad":
                lost = shares(t["histogram"], t["count"], lookup_format(name), shift)["underflow_zero"] * t["count"]
                done, count = totals.get(t["module"], (0.0, 0))
                totals[t["module"]] = (done + lost, count + t["count"])
        return {module: lost / count for module, (lost, count) in totals.items()}

    def first_nonfinite(self) -> NonFinite | None:
        """The module and parameter whose gradient went non-finite first in the last skipped step (None: none)."""
        found = read(self.recorder)["first_nonfinite"]
        return None if found is None else NonFinite(found["module"], found["parameter"], found["step"])

    def recommendations(self) -> dict[str, Any]:
        """Narrowest format per module, loss-scale window, fp8 headroom, keep_fp32 lists (mpx.inspection.recommend)."""
        return self.data()["recommendations"]

    def keep_fp32(self, fmt: str = "fp16") -> list[str]:
        """Modules to keep in fp32 when computing in fmt, as MixedPrecision(keep_fp32=...) takes them."""
        name = self._format(fmt)
        keep = self.recommendations()["keep_fp32"]
        if name not in keep:
            raise InspectionError(f"keep_fp32 lists are made for fp16 and bf16 compute, not {name}")
        return keep[name]

    def loss_scale_window(self) -> tuple[float, float] | None:
        """(lowest, highest) loss scale keeping the gradients inside fp16; None when none does."""
        window = self.recommendations()["loss_scale"]["window"]
        return None if window is None else (window[0], window[1])

    def loss_scaler(self) -> Any:
        """A DynamicLossScaler kept inside the recommended window, starting at the recommended scale."""
        from mpx.training.loss_scaling import DynamicLossScaler

        advice = self.recommendations()["loss_scale"]
        if advice["window"] is None:
            raise InspectionError(f"no fp16 loss scale fits: {advice['reason']}")
        low, high = advice["window"]
        return DynamicLossScaler(advice["recommended"], min_scale=low, max_scale=high, device=self.recorder.device)

    def save(self, path: str | Path) -> Path:
        """Write the report: HTML for .html/.htm, JSON for .json (atomically)."""
        from mpx._io import atomic_write_text, check_writable
        from mpx.inspection.render_html import render

        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in (".html", ".htm", ".json"):
            raise InspectionError(f"cannot tell the report's format from {target.name!r}: name it .html or .json")
        check_writable(target, "inspection report")
        data = self.data()
        text = render(data) if suffix != ".json" else json.dumps(to_json(data), indent=1) + "\n"
        atomic_write_text(target, text)
        return target

    def print_summary(self, console: Any = None) -> None:
        """A short terminal summary (rich)."""
        from mpx.inspection.terminal import print_summary

        print_summary(self.data(), console)


def _shift(data: dict[str, Any], loss_scale: float | None) -> int:
    if loss_scale is None:
        return round(math.log2(data["loss_scale"][-1])) if data["loss_scale"] else 0
    if not (isinstance(loss_scale, (int, float)) and loss_scale > 0 and math.log2(loss_scale).is_integer()):
        raise InspectionError(f"loss_scale must be a power of two, got {loss_scale!r}")
    return round(math.log2(loss_scale))


def _modules(tensors: Any) -> list[str]:
    return list(dict.fromkeys(t["module"] for t in tensors))


def to_json(data: dict[str, Any]) -> dict[str, Any]:
    """The readout with histograms as [exponent, count] pairs (JSON keys must be strings)."""
    tensors = [{**t, "histogram": sorted(t["histogram"].items())} for t in data["tensors"]]
    return {**data, "tensors": tensors}
