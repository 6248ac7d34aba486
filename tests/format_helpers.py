"""Shared by the format tests: ml_dtypes as the reference, value comparison, and an exact rational rounding."""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import torch

ML_DTYPE = {
    "fp32": np.float32,
    "fp16": np.float16,
    "bf16": ml_dtypes.bfloat16,
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
}


def finfo(name: str) -> ml_dtypes.finfo:
    return ml_dtypes.finfo(ML_DTYPE[name])


def assert_same_values(got: torch.Tensor, want: np.ndarray, inputs: np.ndarray) -> None:
    """Equal values with equal signs (so -0 != +0); NaN matches NaN whatever the payload."""
    g = got.double().numpy()
    with np.errstate(invalid="ignore"):  # NaN payloads of narrow formats
        w = np.asarray(want).astype(np.float64)
    same = np.where(np.isnan(w), np.isnan(g), (g == w) & (np.signbit(g) == np.signbit(w)))
    if not same.all():
        bad = np.flatnonzero(~same)[:6]
        x = np.asarray(inputs).astype(np.float64)[bad]
        raise AssertionError(f"{(~same).sum()} of {same.size} differ, e.g. x={x!r} got={g[bad]!r} want={w[bad]!r}")


def ml_round(x: np.ndarray, name: str) -> np.ndarray:
    """ml_dtypes' rounding of x to the format, as values of x's dtype."""
    with np.errstate(all="ignore"):
        return x.astype(ML_DTYPE[name]).astype(x.dtype)


def exact_round(value: float, name: str) -> float:
    """Round-to-nearest-even by rational arithmetic, with the format's limits taken from ml_dtypes.finfo."""
    info = finfo(name)
    has_inf = name != "fp8_e4m3"
    if math.isnan(value):
        return math.nan
    if math.isinf(value):
        return value if has_inf else math.nan
    if value == 0:
        return value
    exponent = max(math.frexp(abs(value))[1] - 1, info.minexp)
    quantum = Fraction(2) ** (exponent - info.nmant)
    scaled = abs(Fraction(value)) / quantum
    whole = math.floor(scaled)
    if scaled - whole > Fraction(1, 2) or (scaled - whole == Fraction(1, 2) and whole % 2):
        whole += 1
    rounded = whole * quantum
    if rounded > Fraction(float(info.max)):
        return math.copysign(math.inf, value) if has_inf else math.nan
    return math.copysign(float(rounded), value)
