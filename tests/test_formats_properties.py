"""Format limits, name lookup, ulp, and hypothesis properties of Format.round (idempotent, monotonic, <= half an
ulp, equal to an exact rational reference)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch
from format_helpers import assert_same_values, exact_round, finfo
from hypothesis import given, settings
from hypothesis import strategies as st

import mpx
from mpx.formats import BF16, FORMATS, FP8_E4M3, FP8_E5M2, FP16, FP32, Format

NAMES = [f.name for f in FORMATS]


@pytest.mark.parametrize("name", NAMES)
def test_format_limits_match_ml_dtypesfinfo(name: str) -> None:
    fmt, info = mpx.format(name), finfo(name)
    assert (fmt.bits, fmt.mantissa_bits, fmt.min_normal) == (info.bits, info.nmant, float(info.smallest_normal))
    assert (fmt.max, fmt.min_subnormal, fmt.eps) == (float(info.max), float(info.smallest_subnormal), float(info.eps))


def test_format_limits_are_the_published_numbers() -> None:
    assert (FP16.max, FP8_E4M3.max, FP8_E5M2.max) == (65504.0, 448.0, 57344.0)
    assert (FP8_E4M3.min_normal, FP8_E5M2.min_normal, FP16.eps, BF16.eps) == (2**-6, 2**-14, 2**-10, 2**-7)
    assert [f.is_fp8 for f in FORMATS] == [False, False, False, True, True]


def test_formats_carry_their_torch_and_onnx_types() -> None:
    assert [f.torch_dtype for f in FORMATS] == [
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float8_e4m3fn,
        torch.float8_e5m2,
    ]
    tp = onnx.TensorProto
    assert [f.onnx_type for f in FORMATS] == [tp.FLOAT, tp.FLOAT16, tp.BFLOAT16, tp.FLOAT8E4M3FN, tp.FLOAT8E5M2]


@pytest.mark.parametrize(
    "alias,fmt",
    [
        ("float16", FP16),
        ("half", FP16),
        ("bfloat16", BF16),
        ("e4m3fn", FP8_E4M3),
        ("FP8-E5M2", FP8_E5M2),
        (" float32 ", FP32),
        (torch.bfloat16, BF16),
        (FP16, FP16),
    ],
)
def test_format_finds_aliases_and_dtypes(alias: object, fmt: Format) -> None:
    assert mpx.format(alias) is fmt


def test_unknown_format_lists_the_formats_and_suggests_the_closest() -> None:
    with pytest.raises(mpx.FormatError, match=r"did you mean 'bf16'\?.*fp16, fp32, fp8_e4m3, fp8_e5m2"):
        mpx.format("bf61")
    with pytest.raises(mpx.FormatError, match="no mpx format for torch.int8"):
        mpx.format(torch.int8)


def test_ulp_is_exact_across_binades_and_subnormals() -> None:
    x = torch.tensor([1.0, 2 - 2.0**-52, 2.0, 65504.0, 2.0**-20, 0.0, math.inf], dtype=torch.float64)
    want = [2.0**-10, 2.0**-10, 2.0**-9, 32.0, 2.0**-24, 2.0**-24, math.inf]
    assert FP16.ulp(x).tolist() == want
    assert FP8_E4M3.ulp(torch.tensor([448.0, 1.0])).tolist() == [32.0, 0.125]


SOURCE_DTYPES = [torch.float64, torch.float32]
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
any32 = st.floats(width=32)
formats = st.sampled_from(FORMATS)


@settings(max_examples=300, deadline=None)
@given(fmt=formats, x=any32)
def test_round_is_idempotent(fmt: Format, x: float) -> None:
    once = fmt.round(torch.tensor([x]))
    twice = fmt.round(once)
    assert_same_values(twice, once.numpy(), np.array([x]))


@settings(max_examples=300, deadline=None)
@given(fmt=formats, a=finite32, b=finite32)
def test_round_is_monotonic(fmt: Format, a: float, b: float) -> None:
    low, high = sorted((a, b))
    for overflow in ("inf", "saturate"):
        r = fmt.round(torch.tensor([low, high]), overflow=overflow)
        if not r.isnan().any():  # e4m3 overflow is NaN, which has no order
            assert r[0] <= r[1]


@settings(max_examples=300, deadline=None)
@given(fmt=formats, x=st.floats(allow_nan=False, allow_infinity=False), dtype=st.sampled_from(SOURCE_DTYPES))
def test_round_error_is_at_most_half_an_ulp(fmt: Format, x: float, dtype: torch.dtype) -> None:
    value = torch.tensor([x], dtype=dtype)
    if abs(float(value)) > fmt.max or not value.isfinite().all():
        return
    rounded = float(fmt.round(value))
    assert abs(Fraction(rounded) - Fraction(float(value))) <= Fraction(float(fmt.ulp(value))) / 2


@settings(max_examples=300, deadline=None)
@given(fmt=formats, x=st.floats())
def test_float64_round_matches_the_exact_reference(fmt: Format, x: float) -> None:
    rounded = fmt.round(torch.tensor([x], dtype=torch.float64))
    assert_same_values(rounded, np.array([exact_round(x, fmt.name)]), np.array([x]))
