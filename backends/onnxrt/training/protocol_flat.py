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

import weakref
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
        self.flat = flatten(tensors)  # of detached tensors: no autograd graph
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


Flats = dict[str, FlatTensors]  # "step", "exp_avg", "exp_avg_sq" of one parameter group
ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")  # torch's keys, in the order torch creates them


def same_step(states: dict, params: Sequence[torch.Tensor]) -> bool:
    """Whether every parameter has the same step count (a fresh group: none yet), read from host memory."""
    steps = {float(states[p]["step"]) if states[p].get("step") is not None else 0.0 for p in params}
    return len(steps) == 1


class AdamBuffers:
    """Per optimizer (gone with it), the flat buffers of one set of its parameters' AdamW state."""

    def __init__(self) -> None:
        self._by_optimizer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __getitem__(self, optimizer: torch.optim.Optimizer) -> dict[tuple[int, ...], Flats]:
        return self._by_optimizer[optimizer]

    def get(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> Flats | None:
        """The flat buffers of `params`' AdamW state, adopted again when something replaced them (the buffers of
        another set of parameters of this optimizer let go); None where the parameters' step counts differ
        (then they step tensor by tensor)."""
        states, key = optimizer.state, tuple(map(id, params))
        tensors = {name: [states[p].get(name) for p in params] for name in ADAM_STATE}
        buffers = self._by_optimizer.setdefault(optimizer, {})
        flats = buffers.get(key)
        if flats is not None and all(flats[name].holds(ts) for name, ts in tensors.items()):
            steps = flats["step"].flat.numpy()  # one stepped alone (the others had no gradient): not one count
            return flats if steps.min() == steps.max() else None
        if not same_step(states, params):
            return None
        for name in ADAM_STATE:  # torch's state, in torch's key order, before the first step
            for p in params:
                if states[p].get(name) is None:
                    states[p][name] = torch.zeros((), dtype=torch.float32) if name == "step" else torch.zeros_like(p)
            tensors[name] = [states[p][name] for p in params]
        adopted = {name: FlatTensors.adopt(ts) for name, ts in tensors.items()}
        kept = {id(t) for ts in tensors.values() for t in ts}
        for old in buffers.values():
            for flat in old.values():
                flat.release(kept)
        buffers.clear()
        buffers[key] = adopted
        return adopted
