"""The inspector's measurement in host memory as one compiled pass per batch (numba), not ~25 torch ops.

On the CPU a recorded step of a small model is mostly op dispatch and copies: the torch formulation
(stats.py) flattens the batch and runs a bucket gather, a count and four reductions over it. Here one compiled
loop reads every tensor where it lies (by address: no concatenation), each element once: its fp32 bit pattern
(bf16 widened by a shift), its bucket, and the tensor's largest and smallest non-zero |x|, added into the
tensor's segment. The result is the torch formulation's, bit for bit (tested). Without numba, or for tensors
on an accelerator, the torch formulation runs.
"""

from __future__ import annotations

import array
import importlib.util
from collections import Counter
from collections.abc import Sequence
from typing import Any

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
        # a bf16 magnitude h is the fp32 pattern h << 16, on the table's grid: its bucket in one load
        self.table16 = table[(np.arange(1 << 15, dtype=np.int64) << 16) >> shift].astype(np.int16)


_LIKE32, _LIKE16 = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int16)
PLAIN = (torch.Tensor, torch.nn.Parameter)  # types whose values are the tensor's own storage


def local_shard(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (FSDP2's parameters and gradients: what this rank holds), any other tensor as is."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


def _copy(tensor: torch.Tensor, shift: int | None) -> torch.Tensor:
    """A contiguous strided copy (fp32 unless `shift` says the dtype is read as it is; sparse or mkldnn: dense)."""
    tensor = tensor.detach() if tensor.layout is torch.strided else tensor.detach().to_dense()
    return tensor.float().contiguous() if shift is None else tensor.contiguous()


class HostPass:
    """The compiled pass with its tables, and a plan buffer kept from batch to batch (a batch makes no numpy
    object: its plan is copied into the buffer's memory)."""

    def __init__(self, table: np.ndarray, shift: int, unmeasured: Counter[str]) -> None:
        self.tables, self.unmeasured = ExponentTables(table, shift), unmeasured
        self._plan = np.zeros(256, dtype=np.int64)
        self._slots = memoryview(self._plan).cast("B").cast("q")
        self._compiled: Any = None

    def __getstate__(self) -> dict[str, Any]:  # a copy of a trainer copies this: without the memoryview
        return {k: v for k, v in self.__dict__.items() if k not in ("_slots", "_compiled")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _compiled=None)
        self._slots = memoryview(self._plan).cast("B").cast("q")

    def measure(
        self, entries: Sequence[tuple[int, torch.Tensor]], joint: np.ndarray, extremes: np.ndarray, row: int
    ) -> None:
        """Add the host tensors of (segment, tensor) `entries` into `joint` ([segments, buckets] counts) and row
        `row` of `extremes` ([rows, 2, segments]), in place; tensors not floating point, or empty, are left
        out. Only plain strided tensors in host memory are read by address (a DTensor: its local shard); any
        other is counted in `unmeasured` by reason. Every tensor stays referenced while the pass reads it."""
        rows: list[int] = []  # per entry: address, elements, widening shift (-1: the previous one's again), segment
        kept = []  # contiguous fp32 copies of what is read through one, alive until the pass is done
        previous = None
        for segment, entry in entries:
            if entry is previous:  # counted already: its counts go into this segment too
                rows += (0, 0, -1, segment)
                continue
            tensor = entry if type(entry) in PLAIN and entry.is_cpu else self._plain(entry)
            if tensor is None:
                continue
            shift = _WIDEN.get(tensor.dtype)
            if shift is None and not tensor.is_floating_point():  # token ids, masks: not measured
                continue
            size = tensor.numel()
            if not size:
                continue
            if shift is None or not tensor.is_contiguous():
                tensor = _copy(tensor, shift)
                shift = _WIDEN[tensor.dtype]
                kept.append(tensor)
            try:
                address = tensor.data_ptr()
            except RuntimeError:  # sparse or mkldnn (read through a dense copy), or no storage at all
                address = self._no_storage(tensor, kept)
            if address == 0:
                self.unmeasured["a tensor whose storage was freed (or on the meta device)"] += 1
            elif address > 0:
                previous = entry
                rows += (address, size, shift, segment)
        if len(rows) > len(self._plan):
            self._plan = np.zeros(2 * len(rows), dtype=np.int64)
            self._slots = memoryview(self._plan).cast("B").cast("q")
        self._slots[: len(rows)] = array.array("q", rows)
        if self._compiled is None:  # numba is imported on the first recorded step, not with mpx
            from mpx.inspection import host_pass

            self._compiled = host_pass.measure
        tables = self.tables
        self._compiled(
            self._plan,
            len(rows) // 4,
            tables.base,
            tables.first_edge,
            tables.edges,
            tables.table16,
            joint,
            extremes,
            row,
            *_LIKE,
        )

    def _plain(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """A tensor that is not a plain one in host memory: a DTensor's local shard, else None (counted)."""
        local = local_shard(tensor)
        if type(local) in PLAIN and local.is_cpu:
            return local
        self.unmeasured[f"{type(tensor).__name__} on {tensor.device.type}: not a plain tensor in host memory"] += 1
        return None

    def _no_storage(self, tensor: torch.Tensor, kept: list[torch.Tensor]) -> int:
        """Where a tensor with no data pointer can be read: a sparse or mkldnn one through a dense fp32 copy;
        -1 (counted) for one inside a torch.func transform."""
        if tensor.layout is torch.strided:
            self.unmeasured["a tensor with no storage (inside a torch.func transform)"] += 1
            return -1
        dense = _copy(tensor, None)
        kept.append(dense)
        return dense.data_ptr()


_LIKE = (_LIKE32, _LIKE16)
