"""On-device statistics of tensors: log2|x| histograms, overflow counts, amax and smallest non-zero |x|.

Every tensor is measured through its fp32 bits. The histogram's bins are the fp32 exponent field, so they
cover fp32's whole range with one bin per power of two: bin e (1..254) holds |x| in [2^(e-127), 2^(e-126)),
bin 0 the fp32 subnormals, and three more count +-inf, zeros and NaN. Underflow to zero or to a subnormal in
any format falls on a power of two, so the histogram answers it at any power-of-two loss scale; overflow does
not (65504 is not a power of two), so each format's overflow threshold also splits the bins.

For non-negative floats the int32 bit pattern orders as the value does (NaNs above inf): one bucketize of the
bits against the bin edges and the thresholds, and one count per batch, give both, in a handful of ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch._utils import _flatten_dense_tensors

from mpx.formats import Format

EXPONENT_BINS = 255  # bins 0..254: fp32 exponent fields of finite non-zero values
INF_BIN, ZERO_BIN, NAN_BIN = 255, 256, 257
BINS = 258
INF_BITS, SIGN_MASK = 0x7F800000, 0x7FFFFFFF


def overflow_threshold(fmt: Format) -> float:
    """The halfway point past fmt's largest finite value: from there up |x| rounds (to nearest even) past it.

    For every format but e4m3 the tie itself rounds up (their max has an odd mantissa); e4m3's max (448) is even,
    so 464 itself still rounds to 448. The inspector counts that one value as overflowing.
    """
    if fmt.bits == 32:
        return math.inf
    return fmt.max + 0.5 * fmt.eps * 2.0 ** math.floor(math.log2(fmt.max))


def _bits(value: float) -> int:
    return int(torch.tensor(value, dtype=torch.float32).view(torch.int32))


def float_of_bits(bits: np.ndarray) -> np.ndarray:
    """fp32 values of int32 bit patterns (as float64)."""
    return np.asarray(bits, dtype=np.int32).view(np.float32).astype(np.float64)


class Buckets:
    """The bucket of every |x|: its power of two, split again at each format's overflow threshold.

    A table indexed by the top 19 bits of |x|'s pattern gives the bucket in one gather: every edge (powers of
    two, overflow thresholds, inf) has its low 12 bits zero. The price: fp32 subnormals below 2^-137 count as
    zeros, and NaNs whose payload sits in the low 12 bits as inf.
    """

    SHIFT = 12

    def __init__(self, thresholds: Sequence[float]) -> None:
        starts = {1 << self.SHIFT: 0, **{e << 23: e for e in range(1, 256)}, INF_BITS + (1 << self.SHIFT): NAN_BIN}
        finite = {i: _bits(t) for i, t in enumerate(thresholds) if math.isfinite(t)}
        if any(edge & ((1 << self.SHIFT) - 1) for edge in finite.values()):
            raise ValueError("an overflow threshold is off the bucket grid")
        edges = sorted({*starts, *finite.values()})
        bins, current = [ZERO_BIN], ZERO_BIN  # bucket 0: the zeros
        for edge in edges:
            current = starts.get(edge, current)
            bins.append(current)
        self.count = len(edges) + 1
        self.bin_of_bucket = np.array(bins)
        position = {edge: i + 1 for i, edge in enumerate(edges)}  # the bucket that starts at an edge
        self.inf_bucket = position[INF_BITS]
        self.first_over = [position.get(finite.get(i, -1), self.inf_bucket) for i in range(len(thresholds))]
        prefixes = np.arange(1 << (31 - self.SHIFT), dtype=np.int64) << self.SHIFT
        self.table = np.searchsorted(np.array(edges, dtype=np.int64), prefixes, side="right").astype(np.int32)

    def histogram(self, joint: np.ndarray) -> np.ndarray:
        """[segments, BINS] counts from [segments, buckets] counts."""
        out = np.zeros((joint.shape[0], BINS), dtype=np.int64)
        for bucket, bin_ in enumerate(self.bin_of_bucket):
            out[:, bin_] += joint[:, bucket]
        return out

    def overflow(self, joint: np.ndarray) -> np.ndarray:
        """[segments, formats] counts of finite values at or past each format's overflow threshold."""
        columns = [joint[:, first : self.inf_bucket].sum(axis=1) for first in self.first_over]
        return np.stack(columns, axis=1) if columns else np.zeros((len(joint), 0), np.int64)


class Layouts:
    """Per batch layout, the index maps of its measurement, made once (no host->device copy per step)."""

    def __init__(self, buckets: int, segments: int, device: torch.device) -> None:
        self.buckets, self.segments, self.device = buckets, segments, device
        self._cache: dict[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], tuple[torch.Tensor, ...]] = {}

    def get(self, sizes: tuple[int, ...], entries: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, ...]:
        """For distinct tensors of `sizes` and (segment, tensor index) `entries`, on the device: each element's
        first bucket (int32), and per entry its tensor and its segment (int64)."""
        key = (sizes, entries)
        maps = self._cache.get(key)
        if maps is None:
            starts = torch.arange(len(sizes), dtype=torch.int32) * self.buckets
            offsets = torch.repeat_interleave(starts, torch.tensor(sizes))
            source = torch.tensor([tensor for _, tensor in entries], dtype=torch.int64)
            target = torch.tensor([segment for segment, _ in entries], dtype=torch.int64)
            maps = tuple(t.to(self.device) for t in (offsets, source, target))
            if len(self._cache) > 64:  # layouts that keep changing: do not grow without bound
                self._cache.clear()
            self._cache[key] = maps
        return maps


def bit_magnitudes(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """|x| of every tensor, concatenated in order, as int32 fp32 bit patterns (one flatten per run of a dtype)."""
    with torch.no_grad():
        runs: list[list[torch.Tensor]] = []
        for tensor in tensors:
            if runs and runs[-1][0].dtype == tensor.dtype:
                runs[-1].append(tensor)
            else:
                runs.append([tensor])
        flat = [_flatten_dense_tensors(run).float() for run in runs]
        joined = flat[0] if len(flat) == 1 else torch.cat(flat)
        if joined.data_ptr() in {t.data_ptr() for t in tensors}:  # a lone fp32 tensor: flatten gave a view
            joined = joined.clone()
        return joined.view(torch.int32).bitwise_and_(SIGN_MASK)
