"""Training memory per parameter, measured from the tensors that exist (not estimated from a formula)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mpx.errors import TrainingInputError


def _nbytes(tensors: Iterable[torch.Tensor], seen: set[int]) -> int:
    total = 0
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor) or t.numel() <= 1 or id(t) in seen:
            continue  # 1-element tensors are step counters and scalars, not per-parameter state
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def bytes_per_parameter(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, trainer: object | None = None
) -> float:
    """(weights + gradients + master weights + optimizer state) bytes / number of model parameters.

    Measured from the tensors that exist now (run one step first so the optimizer state exists).
    Pass the MixedPrecision `trainer` to count its masters and low-precision gradient buffers.
    """
    params = [p for p in model.parameters()]
    count = sum(p.numel() for p in params)
    if count == 0:
        raise TrainingInputError("the model has no parameters to measure")
    seen: set[int] = set()
    total = _nbytes(params, seen) + _nbytes((p.grad for p in params), seen)
    if trainer is not None:
        total += _nbytes(trainer.memory_tensors(), seen)
    for group in optimizer.param_groups:
        total += _nbytes(group["params"], seen) + _nbytes((p.grad for p in group["params"]), seen)
    for state in optimizer.state.values():
        total += _nbytes(state.values(), seen)
    return total / count
