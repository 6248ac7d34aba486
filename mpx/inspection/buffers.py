"""The inspector's device buffers: counts per tensor stream, per-step extremes and histories.

Nothing here reads an accelerator's value (that would sync): capacities grow on the host's step count, and
only values already in host memory (a CPU run's) are read as they come.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import torch

from mpx.inspection import host_kernel
from mpx.inspection.stats import SIGN_MASK, Buckets, Layouts, bit_magnitudes
from mpx.training import optimizer_step

LARGE = 1 << 22  # elements: on an accelerator a tensor this big is measured on its own, not copied into a batch
HISTORY = 1024  # steps of per-parameter gradient norms kept to find a skipped step's first non-finite gradient
COMPACT = 1024  # steps whose loss scale and skip flag wait as references before one stack


class Buffers:
    """Running statistics of `segments` tensor streams on `device`.

    joint: [segments, buckets] counts (histogram bins split at the overflow thresholds). extremes: per recorded
    step and segment, the largest |x|'s fp32 bit pattern and 2^31 minus the smallest non-zero one's. Per step:
    the loss scale and the skip flag, and for the last HISTORY steps each gradient's 2-norm.
    """

    def __init__(self, segments: int, buckets: Buckets, device: torch.device) -> None:
        self.device, self.buckets, self.segments = device, buckets, segments
        self.layouts = Layouts(buckets.count, segments, device)
        self.table = torch.from_numpy(buckets.table).to(device)
        self.joint = torch.zeros(segments * buckets.count, dtype=torch.int64, device=device)
        self.extremes = self._fresh_extremes(16)
        self.scale = torch.zeros(0, device=device)
        self.skipped = torch.zeros(0, dtype=torch.bool, device=device)
        self._steps: list[tuple[Any, Any]] = []  # (scale, skipped): values in host memory, else tensors
        self._values_on_host = device.type in optimizer_step.HOST_DEVICES
        self._not_skipped = torch.zeros((), dtype=torch.bool, device=device)
        # per step (the last HISTORY): (step, grad segments, its row of `_norm_rows`); the rows are one ring tensor,
        # so a step keeps no Python objects of its own alive (thousands of them slow every garbage collection)
        self.norms: deque[tuple[int, tuple[int, ...], int]] = deque(maxlen=HISTORY)
        self._norm_rows = torch.zeros((HISTORY, 0), device=device)
        self._norm_count = 0
        # host memory: one compiled pass per batch (host_kernel.py) instead of the torch ops below
        self.host = device.type == "cpu" and host_kernel.available()
        self.unmeasured: Counter[str] = Counter()  # tensors that could not be measured, by reason
        self._host_pass = host_kernel.HostPass(buckets.table, Buckets.SHIFT, self.unmeasured) if self.host else None
        self._joint_host = self.joint.numpy().reshape(segments, -1) if self.host else None  # a view, not a copy
        self._extremes_host = self.extremes.numpy() if self.host else None

    def _fresh_extremes(self, rows: int) -> torch.Tensor:
        return torch.full((rows, 2, self.segments), -1, dtype=torch.int32, device=self.device)  # -1: not measured

    def add(self, entries: Sequence[tuple[int, torch.Tensor]], row: int) -> None:
        """Measure (segment, tensor) entries into the counts and recorded-step row `row` (tensors not floating
        point, or empty, are left out); a tensor that several segments share (one module's output, the next
        one's input) is measured once (in host memory: where its entries follow each other, as those two do)."""
        if row >= self.extremes.shape[0]:
            self.extremes = torch.cat([self.extremes, self._fresh_extremes(self.extremes.shape[0])])
            self._extremes_host = self.extremes.numpy() if self.host else None
        if self.host:  # read where they lie: one pass, whatever their sizes
            self._host_pass.measure(entries, self._joint_host, self._extremes_host, row)
            return
        entries = [(s, t) for s, t in ((s, self._measurable(t)) for s, t in entries) if t is not None]
        large = [entry for entry in entries if entry[1].numel() >= LARGE]
        for entry in large:
            self._add_batch([entry], row)
        if len(large) < len(entries):
            self._add_batch([entry for entry in entries if entry[1].numel() < LARGE] if large else entries, row)

    def _add_batch(self, entries: Sequence[tuple[int, torch.Tensor]], row: int) -> None:
        """The torch formulation: the batch's tensors flattened into one, counted and reduced with a few ops."""
        unique = {id(tensor): tensor for _, tensor in entries}
        tensors = sorted(unique.values(), key=lambda t: t.dtype != torch.float32)  # one flatten per dtype
        distinct = {id(tensor): index for index, tensor in enumerate(tensors)}
        sizes = tuple(t.numel() for t in tensors)
        offsets, source, target = self.layouts.get(sizes, tuple((s, distinct[id(t)]) for s, t in entries))
        bits = bit_magnitudes(tensors)
        keys = self.table.index_select(0, bits >> Buckets.SHIFT).add_(offsets)
        counts = count_keys(keys, len(tensors) * self.buckets.count, bincount=self.device.type == "cpu")
        counts = counts.view(len(tensors), -1)
        self.joint.view(self.segments, -1).index_add_(0, target, counts.index_select(0, source))
        inverse = torch.neg(bits).bitwise_and_(SIGN_MASK)  # 2^31 - |x|'s pattern; zeros stay 0
        peaks = torch.stack(
            torch._foreach_max([*bits.split(sizes), *inverse.split(sizes)])
        )  # largest, inverted smallest
        self.extremes[row].scatter_reduce_(1, target.expand(2, -1), peaks.view(2, -1).index_select(1, source), "amax")

    def _measurable(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """For the torch formulation: a plain strided floating-point tensor with values (a DTensor's local
        shard, a sparse or nested one's values), or None: not floating point, empty, or counted as unmeasured."""
        tensor = host_kernel.local_shard(tensor)
        if not tensor.is_floating_point() or not tensor.numel():
            return None
        if type(tensor) not in host_kernel.PLAIN or tensor.device != self.device:
            self.unmeasured[f"{type(tensor).__name__} on {tensor.device.type}: not a plain tensor on the device"] += 1
            return None
        if tensor.is_nested:
            return torch.cat([part.reshape(-1) for part in tensor.unbind()])
        if tensor.layout is not torch.strided:
            return tensor.to_dense()
        try:
            if tensor.untyped_storage().nbytes():
                return tensor
            self.unmeasured["a tensor whose storage was freed (or on the meta device)"] += 1
        except (RuntimeError, NotImplementedError):
            self.unmeasured["a tensor with no storage (inside a torch.func transform)"] += 1
        return None

    def end_step(self, scale: torch.Tensor, skipped: torch.Tensor | None) -> None:
        """Note a step's loss scale and skip flag, stacked into the histories every COMPACT steps: in host
        memory their values (a memory read; no tensor kept alive), elsewhere references (a device op per step
        would cost more than the rest of a step in between recorded ones, and a read would sync)."""
        if self._values_on_host:
            self._steps.append((scale.item(), skipped is not None and bool(skipped)))
        else:
            self._steps.append((scale, self._not_skipped if skipped is None else skipped))
        if len(self._steps) >= COMPACT:
            self.compact()

    def compact(self) -> None:
        """Stack the noted steps into the scale and skip histories."""
        if self._steps and self._values_on_host:
            scales = torch.tensor([s for s, _ in self._steps], dtype=torch.float32, device=self.device)
            skipped = torch.tensor([k for _, k in self._steps], dtype=torch.bool, device=self.device)
            self.scale, self.skipped = torch.cat([self.scale, scales]), torch.cat([self.skipped, skipped])
            self._steps = []
        elif self._steps:
            count = len(self._steps)
            scales, skipped = zip(*self._steps, strict=True)
            try:  # one op per history: the usual case, every step's tensors of one shape (a 1-element one)
                scales = torch.stack(scales).detach().reshape(count).float()
                skipped = torch.stack(skipped).detach().reshape(count).bool()
            except RuntimeError:  # shapes that differ between steps: one at a time
                scales = torch.stack([s.detach().reshape(()).float() for s in scales])
                skipped = torch.stack([k.detach().reshape(()).bool() for k in skipped])
            self.scale, self.skipped = torch.cat([self.scale, scales]), torch.cat([self.skipped, skipped])
            self._steps = []

    def record_norms(self, step: int, grads: list[torch.Tensor], layout: tuple[int, ...]) -> None:
        """Each gradient's 2-norm at `step` (inf/NaN: a non-finite value), kept for the last HISTORY steps."""
        if len(grads) > self._norm_rows.shape[1]:  # wider than any step before: the old rows keep their values
            wider = torch.zeros((HISTORY, len(grads)), device=self.device)
            wider[:, : self._norm_rows.shape[1]] = self._norm_rows
            self._norm_rows = wider
        row = self._norm_count % HISTORY
        torch.stack(torch._foreach_norm(grads), out=self._norm_rows[row, : len(grads)])
        self.norms.append((step, layout, row))
        self._norm_count += 1

    def norms_of(self, row: int, width: int) -> list[float]:
        """The gradient norms kept in `row` (a host copy)."""
        return self._norm_rows[row, :width].tolist()


def count_keys(keys: torch.Tensor, size: int, bincount: bool) -> torch.Tensor:
    """Occurrences of each key in [0, size): bincount (fastest on the CPU) or index_add_ (CUDA's bincount reads
    its maximum back to the host; index_add_ does not)."""
    if bincount:
        return torch.bincount(keys, minlength=size)
    counts = torch.zeros(size, dtype=torch.int64, device=keys.device)
    return counts.index_add_(0, keys, torch.ones((), dtype=torch.int64, device=keys.device).expand(keys.numel()))
