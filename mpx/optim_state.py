"""Optimizer-state formats (e.g. Adam's first moment in bf16) and bytes per parameter, measured from tensors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from .errors import ScalingError
from .formats import FP32, Format
from .formats import format as lookup_format

# The optimizer-state keys whose format can be chosen (torch.optim's own key names).
STATE_KEYS = ("exp_avg", "exp_avg_sq", "momentum_buffer")


@dataclass(frozen=True)
class StateFormats:
    """Storage formats of gradients and optimizer state; the update itself computes in fp32.

    `grads` applies to fp32 parameters without master copies: their gradients are moved into buffers of
    this format as soon as autograd has accumulated them.
    """

    grads: Format = FP32
    state: Mapping[str, Format] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.state) - set(STATE_KEYS)
        if unknown:
            raise ScalingError(
                f"unknown optimizer-state keys {sorted(unknown)}; formats can be set for {', '.join(STATE_KEYS)}"
            )
        for fmt in (self.grads, *self.state.values()):
            if fmt.is_fp8:
                raise ScalingError(f"{fmt.name} cannot hold gradients or optimizer state here; use fp32, bf16 or fp16")

    def for_key(self, key: str) -> Format:
        return self.state.get(key, FP32)


def state_formats(grads: str | Format = "fp32", **state: str | Format) -> StateFormats:
    """StateFormats from names: state_formats(grads="bf16", exp_avg="bf16", exp_avg_sq="fp32")."""
    return StateFormats(lookup_format(grads), {k: lookup_format(v) for k, v in state.items()})


FP32_STATE = StateFormats()
# fp32 weights + bf16 grads + bf16 Adam m + fp32 Adam v: 4 + 2 + 2 + 4 = 12 bytes per parameter.
LEAN_ADAM = StateFormats(grads=lookup_format("bf16"), state={"exp_avg": lookup_format("bf16")})


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
        raise ScalingError("the model has no parameters to measure")
    seen: set[int] = set()
    total = _nbytes(params, seen) + _nbytes((p.grad for p in params), seen)
    if trainer is not None:
        total += _nbytes(trainer.memory_tensors(), seen)
    for group in optimizer.param_groups:
        total += _nbytes(group["params"], seen) + _nbytes((p.grad for p in group["params"]), seen)
    for state in optimizer.state.values():
        total += _nbytes(state.values(), seen)
    return total / count
