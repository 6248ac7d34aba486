"""Checking a loss scaler's settings: scales and factors fp32 can hold, counts, devices that exist here.

Each check raises LossScaleError naming the setting, the value and the valid range.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import torch

from mpx.errors import LossScaleError

FP32_MAX = 3.4028234663852886e38


def fits_fp32(value: float) -> bool:
    """Whether `value` stays finite and nonzero once stored as fp32 (the scale lives in a float32 tensor)."""
    try:
        stored = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return False
    return math.isfinite(stored) and stored != 0.0


def check_scale(value: Any, what: str = "loss scale") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LossScaleError(f"the {what} must be a positive number, not {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float64
        value = math.inf
    if not math.isfinite(value) or value <= 0 or not fits_fp32(value):
        raise LossScaleError(
            f"the {what} must be a positive finite number that fp32 holds (1.4e-45 .. {FP32_MAX:.4g}), "
            f"got {value!r}; e.g. 2.0**16"
        )
    return value


def check_factor(value: Any, name: str, low: float, high: float, default: float) -> float:
    """A finite number in the open interval (low, high), or LossScaleError naming it and the range."""
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int beyond float64
        number = math.inf
    if not (low < number < high and fits_fp32(number)):
        shown = f"{FP32_MAX:.4g}]" if high == math.inf else f"{high:g})"
        raise LossScaleError(
            f"{name} must be a number in ({low:g}, {shown}, got {value!r}; torch's default is {default}"
        )
    return number


def check_device(device: torch.device | str | None) -> torch.device | None:
    """`device` as a torch.device, or LossScaleError for a name torch does not parse or a GPU that is not there."""
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise LossScaleError(f"device {device!r} is not a device name; use e.g. 'cpu', 'cuda' or 'cuda:0'") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.backends.cuda.is_built() else 0
        if (parsed.index or 0) >= count:
            raise LossScaleError(f"device {str(parsed)!r} does not exist here: {count} CUDA GPU(s) visible")
    return parsed


def count(state: dict[str, Any], key: str, minimum: int, default: int | None = None) -> int:
    """state[key] as an integer >= minimum (a whole float or 1-element tensor is accepted)."""
    value = state.get(key, default)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LossScaleError(f"scaler state {key!r} must be an integer >= {minimum}, got {value!r}")
    return value
