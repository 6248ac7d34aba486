"""The numerics inspector: which layer under- or overflows in which format, and what precision each layer needs.

`mpx.inspect(model)` (a context manager) or `MixedPrecision(..., inspect=True)` records, per module and per
kind of tensor, on the device and without a host sync per step; the InspectionReport reads it when asked.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mpx.errors import InspectionError
from mpx.formats import Format
from mpx.formats import format as lookup_format
from mpx.inspection.recommend import DEFAULT_THRESHOLD
from mpx.inspection.recorder import KINDS, Recorder
from mpx.inspection.report import InspectionReport, NonFinite

DEFAULT_FORMATS = ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")

__all__ = ["DEFAULT_FORMATS", "DEFAULT_THRESHOLD", "KINDS", "InspectionReport", "NonFinite", "attach", "inspect"]


def _check(model: torch.nn.Module, formats: Iterable[str | Format], every: int, threshold: float) -> list[Format]:
    if not isinstance(model, torch.nn.Module):
        raise InspectionError(f"inspect needs the torch.nn.Module to watch, not {type(model).__name__}")
    if isinstance(formats, (str, Format)):
        formats = (formats,)
    chosen = list(dict.fromkeys(lookup_format(f) for f in formats))  # FormatError names the known formats
    if not chosen:
        raise InspectionError("formats is empty: name at least one, such as ('fp16', 'bf16')")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InspectionError(f"every must be a whole number of steps >= 1, got {every!r}")
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold < 1.0):
        raise InspectionError(f"threshold is a share of values in [0, 1), got {threshold!r}")
    return chosen


def inspect(
    model: torch.nn.Module,
    formats: Iterable[str | Format] = DEFAULT_FORMATS,
    every: int = 1,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> InspectionReport:
    """Record `model`'s numerics every `every`-th step until the report is closed (use it in a `with`).

    A step ends when backward ends (or a forward pass runs without gradients); gradients are taken as the
    backward pass made them (loss scale 1). Under MixedPrecision use its `inspect=True` instead: it records
    the gradients before and after unscaling, the loss scale and the skipped steps.
    """
    chosen = _check(model, formats, every, threshold)
    return InspectionReport(Recorder(model, chosen, every, trainer=False), threshold)


def attach(
    model: torch.nn.Module,
    formats: Iterable[str | Format] = DEFAULT_FORMATS,
    every: int = 1,
    threshold: float = DEFAULT_THRESHOLD,
) -> InspectionReport:
    """The report MixedPrecision keeps: steps, gradients and scales come from the trainer."""
    chosen = _check(model, formats, every, threshold)
    if any(isinstance(m, torch.nn.DataParallel) for m in model.modules()):  # its replicas would share the capture
        raise InspectionError("inspect does not support nn.DataParallel: use DistributedDataParallel or FSDP2")
    return InspectionReport(Recorder(model, chosen, every, trainer=True), threshold)
