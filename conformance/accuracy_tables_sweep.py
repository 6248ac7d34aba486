"""The inputs of an accuracy table and its error metrics: every 16-bit value, and ULP distances in the format.

fp16 and bf16: all 65,536 bit patterns (both zeros, every subnormal, +-inf and the NaN patterns). fp32 cannot be
swept (2**32 values): a sample of 65,536 bit patterns i * 0x10001 (every sign, exponent and high mantissa, with
varied low bits) plus the specials. A second argument gets every value once too, paired by a fixed permutation;
a mask argument alternates. Distances count representable values between two results of one format (+0 and -0
are one value); NaN against NaN is exact, any other non-finite mismatch is an infinite distance.
"""

from __future__ import annotations

import math

import torch

from mpx.formats import FP32, Format
from mpx.ops.spec import OpSpec

SAMPLED_FP32 = 65536
# odd multipliers: each is a permutation of the 2**16 codes (one per extra argument)
_PERMUTATION = (40503, 20021, 52429)
_FP32_SPECIALS = (math.inf, -math.inf, -0.0, FP32.max, -FP32.max, FP32.min_normal, FP32.min_subnormal, 1.0)


def table_formats() -> tuple[str, ...]:
    """The formats an accuracy table is made in: the two exhaustive ones, then the fp32 sample."""
    return ("fp16", "bf16", "fp32")


def is_exhaustive(fmt: Format) -> bool:
    return fmt.bits == 16


def all_codes(fmt: Format) -> torch.Tensor:
    """Every value of a 16-bit format (or the fp32 sample) in code order, as stored tensors of fmt's dtype."""
    if is_exhaustive(fmt):
        return torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(fmt.torch_dtype)
    if fmt.bits != 32:
        raise ValueError(f"accuracy tables are made in 16- and 32-bit formats, not {fmt.name}")
    codes = (torch.arange(SAMPLED_FP32, dtype=torch.int64) * 0x10001).to(torch.int64)
    sample = (codes - (codes >= 2**31).to(torch.int64) * 2**32).to(torch.int32).view(torch.float32)
    return torch.cat([sample, torch.tensor(_FP32_SPECIALS, dtype=torch.float32)])


def sweep_inputs(op: OpSpec, fmt: Format) -> tuple[torch.Tensor, ...] | str:
    """The stored inputs of op's sweep (every code of fmt, NaN payloads included), or why op cannot be swept."""
    codes = all_codes(fmt)
    n = codes.numel()
    inputs, extra = [], 0
    for arg in op.args:
        if arg.role == "mask":
            inputs.append(torch.arange(n) % 2 == 0)
        elif arg.role == "input":
            if extra:
                multiplier = _PERMUTATION[(extra - 1) % len(_PERMUTATION)]
                inputs.append(codes[(torch.arange(n) * multiplier + 12345 * extra) % n])
            else:
                inputs.append(codes)
            extra += 1
        else:
            return f"argument {arg.name!r} ({arg.role}) has no sweep; tables cover float, mask args"
    return tuple(inputs)


def ordinal(values: torch.Tensor, fmt: Format) -> torch.Tensor:
    """Each value's position on fmt's number line (int64; +0 and -0 are both 0), from its bits in fmt."""
    stored = values.to(fmt.torch_dtype)
    if fmt.bits == 16:
        bits = stored.view(torch.int16).to(torch.int64) & 0xFFFF
        sign, magnitude = bits >> 15, bits & 0x7FFF
    else:
        bits = stored.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        sign, magnitude = bits >> 31, bits & 0x7FFFFFFF
    return torch.where(sign == 1, -magnitude, magnitude)


def distances(got: torch.Tensor, want: torch.Tensor, exact: torch.Tensor, fmt: Format) -> tuple[torch.Tensor, ...]:
    """(ULPs from the correctly rounded `want`, ULPs from the float64 `exact`) per element, both float64.

    got and want are values of fmt (got in any dtype that holds them); exact is the float64 value `want` rounds.
    The exact metric falls back on the rounded one where the reference is non-finite or beyond fmt's range.
    """
    got, want, exact = got.to(torch.float64), want.to(torch.float64), exact.to(torch.float64)
    both_finite = torch.isfinite(got) & torch.isfinite(want)
    nonfinite_equal = (got.isnan() & want.isnan()) | (torch.isinf(want) & (got == want))
    steps = ordinal(torch.where(both_finite, got, 0.0), fmt) - ordinal(torch.where(both_finite, want, 0.0), fmt)
    rounded = torch.where(both_finite, steps.abs().to(torch.float64), math.inf)
    rounded = torch.where(nonfinite_equal, 0.0, rounded)
    in_range = both_finite & torch.isfinite(exact) & (exact.abs() <= fmt.max)
    off = (torch.where(in_range, got, 0.0) - torch.where(in_range, exact, 0.0)).abs()
    fractional = off / fmt.ulp(torch.where(in_range, exact, 0.0))
    return rounded, torch.where(in_range, fractional, rounded)


def show(value: float) -> str:
    """A value as a report writes it: repr of the float ('-0.0', 'inf', 'nan', '6.103515625e-05')."""
    return repr(float(value))
