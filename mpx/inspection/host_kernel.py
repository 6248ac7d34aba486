"""The inspector's measurement in host memory as one compiled pass per batch (numba), not ~25 torch ops.

On the CPU a recorded step of a small model is mostly op dispatch: the torch formulation (stats.py) runs a
flatten, a bucket gather, a count and four reductions, each a pass and a dispatch. Here one loop per dtype
run reads each element once: its fp32 bit pattern (bf16 widened by a shift), its bucket from the same table,
the counts of its tensor, and the tensor's largest and smallest non-zero |x|, added into the segments that
tensor belongs to. The result is the torch formulation's, bit for bit (tested). Without numba, or for tensors
on an accelerator, the torch formulation runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch._utils import _flatten_dense_tensors

SIGN_MASK = 0x7FFFFFFF


def available() -> bool:
    """Whether the compiled host pass can run here (numba installed; imported on first use, not here)."""
    return importlib.util.find_spec("numba") is not None


def _measure(  # pragma: no cover - compiled by numba
    bits: np.ndarray,
    widen: int,
    bounds: np.ndarray,
    seg_ptr: np.ndarray,
    seg_idx: np.ndarray,
    base: np.ndarray,
    first_edge: np.ndarray,
    edges: np.ndarray,
    joint: np.ndarray,
    extremes: np.ndarray,
) -> None:
    """Per tensor t (elements bounds[t]:bounds[t+1] of `bits`): bucket counts, the largest |x| pattern and
    2^31 minus the smallest non-zero one, added / max-ed into each of its segments seg_idx[seg_ptr[t]:...].
    A pattern's bucket: its power of two's first bucket, plus the edges inside that power it reaches."""
    local = np.zeros(joint.shape[1], dtype=np.int64)
    for t in range(bounds.shape[0] - 1):
        local[:] = 0
        largest, inverted = -1, -1
        for i in range(bounds[t], bounds[t + 1]):
            b = (np.int64(bits[i]) << widen) & SIGN_MASK
            exponent = b >> 23
            bucket, k = base[exponent], first_edge[exponent]
            while b >= edges[k]:  # the bucket edges inside this power of two (usually none)
                bucket += 1
                k += 1
            local[bucket] += 1
            if b > largest:
                largest = b
            inverse = (-b) & SIGN_MASK  # zeros stay 0: never the smallest non-zero
            if inverse > inverted:
                inverted = inverse
        for s in range(seg_ptr[t], seg_ptr[t + 1]):
            segment = seg_idx[s]
            joint[segment, :] += local
            if largest > extremes[0, segment]:
                extremes[0, segment] = largest
            if inverted > extremes[1, segment]:
                extremes[1, segment] = inverted


_compiled: Any = None


def _kernel() -> Any:
    global _compiled
    if _compiled is None:
        import numba

        _compiled = numba.njit(cache=True, nogil=True)(_measure)
    return _compiled


class ExponentTables:
    """The bucket table of stats.Buckets (indexed by a pattern's top bits) as a few hundred bytes that stay in
    cache: per fp32 exponent field its first bucket and the edges inside it (sentinel-terminated)."""

    def __init__(self, table: np.ndarray, shift: int) -> None:
        per_exponent = 1 << (23 - shift)
        self.base = table[::per_exponent].astype(np.int64)
        first, edges = [], []
        for exponent in range(256):
            first.append(len(edges))
            run = table[exponent * per_exponent : (exponent + 1) * per_exponent]
            steps = np.flatnonzero(np.diff(run)) + 1 + exponent * per_exponent
            if np.any(np.diff(run) > 1):  # edges on the grid of the table are one entry apart at least
                raise ValueError("a bucket table entry skips a bucket")
            edges += [int(step) << shift for step in steps] + [1 << 40]
        self.first_edge = np.array(first, dtype=np.int64)
        self.edges = np.array(edges, dtype=np.int64)


class HostLayout:
    """Per batch layout: the distinct tensors grouped in runs of one dtype, and each run's index maps."""

    def __init__(self, dtypes: Sequence[torch.dtype], sizes: Sequence[int], entries: Sequence[tuple[int, int]]) -> None:
        self.runs: list[tuple[list[int], np.ndarray, np.ndarray, np.ndarray]] = []
        segments_of: dict[int, list[int]] = {}
        for segment, tensor in entries:
            segments_of.setdefault(tensor, []).append(segment)
        order = sorted(range(len(sizes)), key=lambda t: _RUN_ORDER.get(dtypes[t], 2))
        for dtype in dict.fromkeys(dtypes[t] for t in order):
            members = [t for t in order if dtypes[t] == dtype]
            bounds = np.concatenate([[0], np.cumsum([sizes[t] for t in members])]).astype(np.int64)
            counts = [len(segments_of.get(t, ())) for t in members]
            seg_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            seg_idx = np.array([s for t in members for s in segments_of.get(t, ())], dtype=np.int64)
            self.runs.append((members, bounds, seg_ptr, seg_idx))


_RUN_ORDER = {torch.float32: 0, torch.bfloat16: 1}


def measure(
    tensors: Sequence[torch.Tensor],
    layout: HostLayout,
    tables: ExponentTables,
    joint: np.ndarray,
    extremes: np.ndarray,
) -> None:
    """Add host `tensors` into `joint` ([segments, buckets] counts) and `extremes` ([2, segments]), in place."""
    kernel = _kernel()
    for members, bounds, seg_ptr, seg_idx in layout.runs:
        flat = _flatten_dense_tensors([tensors[t].detach() for t in members])  # detached: no autograd graph
        if flat.dtype == torch.float32:
            bits, widen = flat.view(torch.int32).numpy(), 0
        elif flat.dtype == torch.bfloat16:  # bf16 is fp32's top half: widen the pattern, no conversion
            bits, widen = flat.view(torch.int16).numpy(), 16
        else:
            bits, widen = flat.float().view(torch.int32).numpy(), 0
        kernel(bits, widen, bounds, seg_ptr, seg_idx, tables.base, tables.first_edge, tables.edges, joint, extremes)
