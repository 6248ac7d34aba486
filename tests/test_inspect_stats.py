"""The inspector's on-device statistics against independent references (torch casts, mpx.Format.round, numpy)."""

import math

import numpy as np
import pytest
import torch

import mpx
from mpx.inspection.buffers import Buffers, count_keys
from mpx.inspection.readout import shares
from mpx.inspection.recorder import nonfinite_culprit
from mpx.inspection.stats import EXPONENT_BINS, INF_BIN, NAN_BIN, ZERO_BIN, Buckets, overflow_threshold

FORMATS = [mpx.format(name) for name in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp32")]


def measured(tensors, segments=None):
    """Measure tensors (one segment each unless `segments` says otherwise) and read the counts back."""
    buckets = Buckets([overflow_threshold(f) for f in FORMATS])
    segments = segments or list(range(len(tensors)))
    buffers = Buffers(max(segments) + 1, buckets, torch.device("cpu"))
    buffers.add(list(zip(segments, tensors, strict=True)), 0)
    joint = buffers.joint.view(buffers.segments, -1).numpy()
    return buckets.histogram(joint), buckets.overflow(joint), buffers.extremes[0].numpy()


def values(seed=0, n=20000):
    """Magnitudes spread over fp32's range, both signs, with zeros, infinities, NaN and exact thresholds."""
    generator = torch.Generator().manual_seed(seed)
    x = (
        torch.exp2(torch.empty(n).uniform_(-140, 127.9, generator=generator))
        * torch.randn(n, generator=generator).sign()
    )
    specials = [0.0, -0.0, math.inf, -math.inf, math.nan, 65504.0, 65520.0, -65520.0, 448.0, 464.0, 57344.0, 61440.0]
    return torch.cat([x, torch.tensor(specials + [overflow_threshold(f) for f in FORMATS[:2]])])


def test_histogram_bins_are_powers_of_two_over_fp32s_range():
    x = values()
    histogram, _, _ = measured([x])
    magnitude = x.abs().double().numpy()
    finite = magnitude[np.isfinite(magnitude) & (magnitude >= 2.0**-137)]
    expected = np.bincount(np.clip(np.floor(np.log2(finite)).astype(int) + 127, 0, None), minlength=EXPONENT_BINS)
    assert histogram[0, 1:EXPONENT_BINS].tolist() == expected[1:EXPONENT_BINS].tolist()
    assert histogram[0, INF_BIN] == 2 and histogram[0, NAN_BIN] == 1
    assert histogram[0, ZERO_BIN] == int((magnitude < 2.0**-137).sum())  # zeros and the deepest fp32 subnormals
    assert histogram[0].sum() == x.numel()


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_overflow_counts_match_rounding_in_the_format(fmt):
    x = values(seed=1)
    _, overflow, _ = measured([x])
    finite = x[x.isfinite()]
    rounded = fmt.round(finite.double())
    expected = int((~rounded.isfinite() | (rounded.abs() > fmt.max)).sum())  # e4m3 overflows to NaN
    if fmt.name == "fp8_e4m3":  # the tie 464 rounds down to 448 (even); the inspector counts it (documented)
        expected += int((finite.abs() == 464).sum())
    assert overflow[0, FORMATS.index(fmt)] == expected


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.bits < 32], ids=str)
def test_underflow_share_matches_rounding_to_zero(fmt):
    generator = torch.Generator().manual_seed(2)
    x = torch.exp2(torch.empty(50000).uniform_(-30, 0, generator=generator))
    histogram, _, _ = measured([x])
    finite = {b - 127: int(n) for b, n in enumerate(histogram[0, :EXPONENT_BINS]) if n}
    share = shares(finite, x.numel(), fmt)["underflow_zero"]
    assert share == pytest.approx(float((fmt.round(x.double()) == 0).double().mean()), abs=1e-9)


def test_extremes_are_exact_per_segment_and_skip_non_finite_for_the_smallest():
    a = torch.tensor([0.0, -3.5, 1e-30, 2.0])
    b = torch.tensor([0.0, 0.0])
    c = torch.tensor([7.0, -1e-40, math.inf])
    _, _, extremes = measured([a, b, c])
    amax = extremes[0].view(np.float32)
    smallest = ((1 << 31) - extremes[1].astype(np.int64)).astype(np.int32).view(np.float32)
    assert amax[0] == np.float32(3.5) and amax[1] == 0.0 and math.isinf(amax[2])  # a step with inf records inf
    assert smallest[0] == np.float32(1e-30) and smallest[2] == np.float32(-1e-40) * -1
    assert extremes[1][1] == 0  # nothing non-zero


def test_a_tensor_shared_by_two_segments_counts_in_both_once_measured():
    shared, other = torch.randn(100), torch.randn(7)
    histogram, _, extremes = measured([shared, shared, other], segments=[0, 1, 1])
    assert histogram[0].sum() == 100 and histogram[1].sum() == 107
    largest = extremes[0].view(np.float32)
    assert largest[0] == shared.abs().max() and largest[1] == torch.cat([shared, other]).abs().max()


def test_culprit_is_the_first_non_finite_gradient_in_backward_order():
    layout = (4, 7, 9)
    assert nonfinite_culprit([1.0, math.inf, math.nan], layout, order=[9, 7, 4]) == 9
    assert nonfinite_culprit([1.0, math.inf, 2.0], layout, order=[9, 7, 4]) == 7
    assert nonfinite_culprit([1.0, 2.0, 3.0], layout, order=[9, 7, 4]) is None
    assert nonfinite_culprit([math.nan, 2.0, 3.0], layout, order=[]) == 4  # no order noted: model order


def test_the_accelerator_counting_path_matches_bincount():
    """CUDA takes index_add_ (bincount would read its max back to the host): the same counts, run on the CPU."""
    keys = torch.randint(0, 500, (10000,), generator=torch.Generator().manual_seed(4), dtype=torch.int32)
    assert torch.equal(count_keys(keys, 600, bincount=False), count_keys(keys, 600, bincount=True))
