"""Formats and Format.round, checked bit for bit against ml_dtypes, numpy casts and an exact rational reference.

ml_dtypes converts float64 through float32 (two roundings: 1 + 2**-8 + 2**-30 -> bfloat16 gives 1.0), so it is the
reference for fp32/fp16/bf16 inputs and for float64 inputs that fp32 holds exactly; other float64 inputs are checked
against numpy's direct float64 -> float16/float32 casts and against exact rational arithmetic (fractions).
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch
from format_helpers import ML_DTYPE, assert_same_values, exact_round, ml_round

import mpx
from mpx.formats import BF16, FORMATS, FP8_E4M3, FP8_E5M2, FP16, Format

NAMES = [f.name for f in FORMATS]
SMALL_NAMES = [f.name for f in FORMATS if f.bits < 32]


def _torch(x: np.ndarray) -> torch.Tensor:
    if x.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(x.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(x.copy())


def every_pattern(dtype: type) -> np.ndarray:
    bits = 8 * np.dtype(dtype).itemsize
    return np.arange(2**bits, dtype=np.uint16 if bits == 16 else np.uint8).view(dtype)


def finite_positive_values(name: str) -> np.ndarray:
    """Every finite value > 0 of a format of 16 bits or fewer, ascending, as float64."""
    with np.errstate(all="ignore"):
        values = every_pattern(ML_DTYPE[name]).astype(np.float64)
    return np.unique(values[np.isfinite(values) & (values > 0)])


@pytest.fixture(scope="module")
def random_fp32() -> np.ndarray:
    """2**20 fp32 values: uniform bit patterns (NaN payloads, infs, fp32 subnormals) and log-uniform magnitudes."""
    rng = np.random.default_rng(20240501)
    quarter = 2**18
    patterns = rng.integers(0, 2**32, size=2 * quarter, dtype=np.uint64).astype(np.uint32).view(np.float32)
    wide = rng.uniform(1, 2, quarter) * np.exp2(rng.integers(-152, 130, quarter).astype(np.float64))
    narrow = rng.uniform(1, 2, quarter) * np.exp2(rng.integers(-30, 20, quarter).astype(np.float64))
    magnitudes = np.concatenate([wide, narrow]) * rng.choice([-1.0, 1.0], 2 * quarter)
    with np.errstate(over="ignore"):
        return np.concatenate([patterns, magnitudes.astype(np.float32)])


def edge_values(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(fp32 edge cases for the format, the exact ties among them).

    Every value of the format, every midpoint between neighbours (ties, subnormal ones included), max, the
    overflow boundary (max + half a step), fp32's own extremes, +-0, +-inf, NaN; each with its fp32 neighbours.
    """
    specials = [0.0, np.finfo(np.float32).smallest_subnormal, np.finfo(np.float32).tiny, np.finfo(np.float32).max]
    ties = np.zeros(0)
    if name != "fp32":
        values = finite_positive_values(name)
        step_at_max = values[-1] - values[-2]
        ties = np.concatenate([(values[:-1] + values[1:]) / 2, values[:1] / 2, [values[-1] + step_at_max / 2]])
        specials = np.concatenate([specials, values, ties])
    base = np.asarray(specials, np.float64).astype(np.float32)
    with np.errstate(over="ignore"):
        around = np.concatenate([base, np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(0))])
    edges = np.concatenate([around, -around, np.array([np.inf, -np.inf, np.nan], np.float32)])
    return edges, ties.astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("source", [np.float16, ml_dtypes.bfloat16], ids=["fp16", "bf16"])
def test_round_matches_ml_dtypes_on_every_16_bit_pattern(source: type, name: str) -> None:
    x = every_pattern(source)
    assert_same_values(mpx.format(name).round(_torch(x)), ml_round(x, name), x)


@pytest.mark.parametrize("name", NAMES)
def test_round_matches_ml_dtypes_on_a_million_random_fp32(random_fp32: np.ndarray, name: str) -> None:
    assert random_fp32.size >= 10**6
    assert_same_values(mpx.format(name).round(torch.from_numpy(random_fp32)), ml_round(random_fp32, name), random_fp32)


@pytest.mark.parametrize("name", NAMES)
def test_round_matches_ml_dtypes_on_ties_subnormals_and_overflow_edges(name: str) -> None:
    edges, _ = edge_values(name)
    assert_same_values(mpx.format(name).round(torch.from_numpy(edges)), ml_round(edges, name), edges)


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_exact_ties_round_to_the_even_neighbour(name: str) -> None:
    _, ties = edge_values(name)
    rounded = mpx.format(name).round(torch.from_numpy(ties)).double().numpy()
    finite = np.isfinite(rounded)
    codes = (rounded[finite].astype(ML_DTYPE[name]).view(np.uint8 if "fp8" in name else np.uint16)).astype(np.int64)
    assert (codes % 2 == 0).all()  # the even neighbour has an even code
    assert finite.sum() >= ties.size - 1  # only the overflow tie of e5m2/fp16/bf16 may go to inf


@pytest.mark.parametrize("name", NAMES)
def test_round_of_fp32_representable_float64_matches_ml_dtypes(random_fp32: np.ndarray, name: str) -> None:
    with np.errstate(invalid="ignore"):
        x = np.concatenate([random_fp32, edge_values(name)[0]]).astype(np.float64)
    assert_same_values(mpx.format(name).round(torch.from_numpy(x)), ml_round(x.astype(np.float32), name), x)


@pytest.fixture(scope="module")
def random_float64() -> np.ndarray:
    """Float64 values with all 52 mantissa bits random: most are not fp32 values."""
    rng = np.random.default_rng(7)
    patterns = rng.integers(0, 2**64, size=2**18, dtype=np.uint64).view(np.float64)
    magnitudes = rng.uniform(1, 2, 2**19) * np.exp2(rng.integers(-160, 140, 2**19).astype(np.float64))
    return np.concatenate([patterns, magnitudes * rng.choice([-1.0, 1.0], magnitudes.size)])


@pytest.mark.parametrize("name,dtype", [("fp16", np.float16), ("fp32", np.float32)])
def test_float64_round_matches_numpys_direct_cast(random_float64: np.ndarray, name: str, dtype: type) -> None:
    with np.errstate(all="ignore"):
        want = random_float64.astype(dtype).astype(np.float64)
    assert_same_values(mpx.format(name).round(torch.from_numpy(random_float64)), want, random_float64)


def double_rounding_traps(name: str) -> np.ndarray:
    """Float64 values next to the format's ties: rounding them through fp32 first lands on the tie."""
    rng = np.random.default_rng(3)
    if name == "fp32":
        base = rng.uniform(1, 2, 600) * np.exp2(rng.integers(-149, 128, 600).astype(np.float64))
        base = base.astype(np.float32).astype(np.float64)
        ties = base + np.spacing(base.astype(np.float32)).astype(np.float64) / 2
    else:
        values = finite_positive_values(name)
        ties = np.concatenate([(values[:-1] + values[1:]) / 2, [values[-1] + (values[-1] - values[-2]) / 2]])
        ties = rng.choice(ties, min(ties.size, 600), replace=False)
    nudged = [ties, ties * (1 + 2.0**-40), ties * (1 - 2.0**-40), np.nextafter(ties, np.inf), np.nextafter(ties, 0)]
    random = rng.uniform(1, 2, 600) * np.exp2(rng.integers(-150, 130, 600).astype(np.float64))
    points = np.concatenate([*nudged, random])
    return np.concatenate([points, -points, [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, np.finfo(np.float64).max]])


@pytest.mark.parametrize("name", NAMES)
def test_float64_round_is_a_single_exact_rounding(name: str) -> None:
    x = double_rounding_traps(name)
    want = np.array([exact_round(float(v), name) for v in x])
    assert_same_values(mpx.format(name).round(torch.from_numpy(x)), want, x)


def test_float64_round_differs_from_rounding_through_fp32() -> None:
    x = 1 + 2.0**-8 + 2.0**-30  # through fp32 it becomes the tie 1 + 2**-8, which rounds to even: 1.0
    assert BF16.round(x) == 1 + 2.0**-7
    assert float(np.float32(x).astype(ml_dtypes.bfloat16)) == 1.0


def _random_and_edges(random_fp32: np.ndarray, name: str) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([random_fp32, edge_values(name)[0]]))


def _overflowed(rounded: torch.Tensor, x: torch.Tensor, fmt: Format) -> torch.Tensor:
    return rounded.isinf() if fmt.has_inf else rounded.isnan() & ~x.isnan()


@pytest.mark.parametrize("name", NAMES)
def test_saturate_turns_overflow_and_inf_into_signed_max(random_fp32: np.ndarray, name: str) -> None:
    fmt = mpx.format(name)
    x = _random_and_edges(random_fp32, name)
    ieee = fmt.round(x)
    saturated = fmt.round(x, overflow="saturate")
    overflowed = _overflowed(ieee, x, fmt)
    assert overflowed.any()
    want = torch.where(overflowed, torch.full_like(x, fmt.max).copysign(x), ieee)
    assert_same_values(saturated, want.numpy(), x.numpy())
    assert not saturated.isinf().any()


@pytest.mark.parametrize("name", NAMES)
def test_flush_turns_subnormal_results_into_signed_zero(random_fp32: np.ndarray, name: str) -> None:
    fmt = mpx.format(name)
    x = _random_and_edges(random_fp32, name)
    kept = fmt.round(x)
    flushed = fmt.round(x, subnormals="flush")
    subnormal = (kept.abs() < fmt.min_normal) & (kept != 0)
    assert subnormal.any()
    want = torch.where(subnormal, torch.zeros_like(x).copysign(x), kept)
    assert_same_values(flushed, want.numpy(), x.numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_fp8_e4m3_overflow_is_nan_although_torch_casts_saturate(dtype: torch.dtype) -> None:
    x = torch.tensor([448.0, 464.0, 1000.0, -1000.0, math.inf], dtype=dtype)
    x = torch.cat([x, torch.nextafter(x[1:2], torch.tensor([math.inf], dtype=dtype))])
    rounded = FP8_E4M3.round(x)
    assert rounded[:2].tolist() == [448.0, 448.0]  # 464 is the tie between 448 and (absent) 480: even is 448
    assert rounded[2:].isnan().all()
    assert FP8_E4M3.round(x, overflow="saturate")[2:].abs().tolist() == [448.0] * 4


def test_fp8_e4m3_overflow_is_nan_in_a_non_contiguous_tensor() -> None:
    x = torch.tensor([[1000.0, 1.0], [2.0, -500.0]]).t()
    assert FP8_E4M3.round(x).isnan().tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_round_returns_values_of_the_input_dtype(dtype: torch.dtype) -> None:
    assert FP8_E5M2.round(torch.ones(3, dtype=dtype)).dtype == dtype


def test_round_takes_numpy_arrays_and_python_floats() -> None:
    assert FP16.round(np.array([1 + 2.0**-12], np.float32)).dtype == np.float32
    assert FP16.round(1 + 2.0**-11 + 2.0**-30) == 1 + 2.0**-10


@pytest.mark.parametrize(
    "call",
    [
        lambda: FP16.round(torch.arange(3)),
        lambda: FP16.round(torch.ones(2), overflow="clip"),
        lambda: FP16.round(torch.ones(2), subnormals="zero"),
        lambda: FP16.round("1.0"),
        lambda: FP16.round(np.arange(3)),
    ],
    ids=["int-tensor", "bad-overflow", "bad-subnormals", "string", "int-array"],
)
def test_round_rejects_bad_input_with_a_format_error(call) -> None:
    with pytest.raises(mpx.FormatError):
        call()
