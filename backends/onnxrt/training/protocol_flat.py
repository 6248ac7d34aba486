"""Tensors laid end to end for the protocol graphs.

`flatten` and `scatter` lay tensors end to end and copy a flat result back (one C++ call each, as DDP's
buckets are made). `FlatTensors` keeps a list of optimizer state tensors (Adam's moments and step counts, which
the optimizer owns and mpx creates) as consecutive views of one buffer, as apex's fused optimizers keep them:
a graph reads the whole list as one array and its result lands with one copy. The tensors stay the ones torch
knows (same objects, same state keys); `holds` tells whether they still are the views (a load_state_dict or
`.data =` replaces them, and the buffer is adopted again). Parameters are never rebound: views a user or
another process holds of them (`share_memory`, numpy, an early `state_dict()`) keep seeing every update.
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
        self.tensors = list(tensors)
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

    def release(self, kept: set[int]) -> None:
        """Give each adopted tensor not in `kept` (ids) that is still a piece of this buffer its own storage,
        so that the buffer goes once the tensors that moved on no longer use it."""
        with torch.no_grad():
            for tensor, (address, _) in zip(self.tensors, self._layout, strict=True):
                if id(tensor) not in kept and tensor.data_ptr() == address:
                    tensor.data = tensor.data.clone()
