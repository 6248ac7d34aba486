"""Tensors laid end to end for the protocol graphs, without concatenating and scattering them every step.

`FlatTensors` rebinds a list of fp32 host tensors (masters, Adam moments) as consecutive views of one
buffer, the way FSDP's flat parameter and apex's fused optimizers keep them: a graph then reads the whole
list as one array and its result is copied back with one copy. The tensors stay the ones torch knows
(a parameter keeps its identity, an optimizer state keeps its keys); `holds` tells whether they are still
the views (a load_state_dict or `.data =` replaces them, and the buffer is adopted again).

`UnscaledGradients` remembers the flat array an unscale produced, so the update that follows reads it
instead of concatenating the same gradients again; a gradient changed in place in between (clipping)
shows in its version counter and is concatenated afresh.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """`tensors` laid end to end in one new 1-d tensor (one C++ call, as DDP's buckets are made)."""
    return _flatten_dense_tensors([t.detach() for t in tensors])


def scatter(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    """Copy consecutive pieces of `flat` into `tensors` (laid end to end, in order)."""
    torch._foreach_copy_(list(tensors), _unflatten_dense_tensors(flat, tensors))


class FlatTensors:
    """One fp32 buffer whose consecutive pieces are the adopted tensors' storage."""

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            self.flat = flatten(tensors)
        self._layout = [(piece.data_ptr(), piece.shape) for piece in _unflatten_dense_tensors(self.flat, tensors)]

    @classmethod
    def adopt(cls, tensors: Sequence[torch.Tensor]) -> FlatTensors:
        """Copy `tensors` into one buffer and rebind each one's data as its piece of it (in place)."""
        adopted = cls(tensors)
        with torch.no_grad():
            for tensor, piece in zip(tensors, _unflatten_dense_tensors(adopted.flat, tensors), strict=True):
                tensor.data = piece
        return adopted

    def holds(self, tensors: Sequence[torch.Tensor]) -> bool:
        """Whether `tensors` are, in order, still exactly this buffer's pieces (same addresses and shapes)."""
        try:
            return [(t.data_ptr(), t.shape) for t in tensors] == self._layout
        except AttributeError:  # a state not made yet (None)
            return False


class UnscaledGradients:
    """The flat fp32 array of the last unscale and the gradients it was scattered into, with their versions."""

    def __init__(self) -> None:
        self._flat: torch.Tensor | None = None
        self._grads: list[torch.Tensor] = []
        self._where: dict[int, tuple[int, int]] = {}  # id(grad) -> (index, version after the scatter)

    def remember(self, flat: torch.Tensor, grads: Sequence[torch.Tensor]) -> None:
        self._flat, self._grads = flat, list(grads)
        self._where = {id(g): (i, g._version) for i, g in enumerate(self._grads)}

    def forget(self) -> None:
        self.__init__()

    def flat(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """`grads` laid end to end: a slice of the remembered array where they are a run of it, untouched
        since; else a new concatenation."""
        first = self._where.get(id(grads[0])) if grads else None
        if first is not None and self._flat is not None:
            start = first[0]
            run = self._grads[start : start + len(grads)]
            if len(run) == len(grads) and all(
                a is b and a._version == self._where[id(a)][1] for a, b in zip(run, grads, strict=True)
            ):
                offset = sum(g.numel() for g in self._grads[:start])
                return self._flat[offset : offset + sum(g.numel() for g in grads)]
        return flatten(grads)
