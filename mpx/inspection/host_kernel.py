"""The inspector's measurement in host memory as one compiled pass per batch (numba), not ~25 torch ops.

On the CPU a recorded step of a small model is mostly op dispatch and copies: the torch formulation
(stats.py) flattens the batch and runs a bucket gather, a count and four reductions over it. Here one compiled
loop reads every tensor where it lies (by address: no concatenation), each element once: its fp32 bit pattern
(bf16 widened by a shift), its bucket, and the tensor's largest and smallest non-zero |x|, added into the
tensor's segment. The result is the torch formulation's, bit for bit (tested). Without numba, or for tensors
on an accelerator, the torch formulation runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

import numpy as np
import torch

SIGN_MASK = 0x7FFFFFFF
_WIDEN = {torch.float32: 0, torch.bfloat16: 16}  # read as they are; any other dtype through an fp32 copy


def available() -> bool:
    """Whether the compiled host pass can run here (numba installed; imported on first use, not here)."""
    return importlib.util.find_spec("numba") is not None


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


_LIKE32, _LIKE16 = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int16)


def measure(
    entries: Sequence[tuple[int, torch.Tensor]], tables: ExponentTables, joint: np.ndarray, extremes: np.ndarray
) -> None:
    """Add the host tensors of (segment, tensor) `entries` into `joint` ([segments, buckets] counts) and
    `extremes` ([2, segments]), in place; tensors not floating point, or empty, are left out. Every tensor stays
    referenced here while the pass reads it."""
    rows: list[int] = []  # per entry: address, elements, widening shift (-1: the previous entry's again), segment
    kept = []  # contiguous fp32 copies of what is read through one, alive until the pass is done
    previous = None
    for segment, tensor in entries:
        if tensor is previous:  # counted already: its counts go into this segment too
            rows += (0, 0, -1, segment)
            continue
        shift = _WIDEN.get(tensor.dtype)
        if shift is None and not tensor.is_floating_point():  # token ids, masks: not measured
            continue
        size = tensor.numel()
        if not size:
            continue
        previous = tensor
        if shift is None or not tensor.is_contiguous():
            tensor = tensor.detach().float().contiguous() if shift is None else tensor.detach().contiguous()
            shift = _WIDEN[tensor.dtype]
            kept.append(tensor)
        rows += (tensor.data_ptr(), size, shift, segment)
    from mpx.inspection import host_pass  # here: numba is imported on the first recorded step, not with mpx

    plan = np.array(rows, dtype=np.int64).reshape(-1, 4)  # from one flat list: the fastest way in
    host_pass.measure(plan, tables.base, tables.first_edge, tables.edges, joint, extremes, _LIKE32, _LIKE16)
