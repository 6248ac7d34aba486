"""The precision ops of the conformance suite, computed by a TrainingBackend's own training protocol.

unscale and nonfinite_check run `unscale_and_check_`, the master updates run `masked_step` on a one-tensor
torch optimizer, cast_back runs `cast_back`: the very methods MixedPrecision.step calls, so a conformance
pass certifies the code that trains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import torch

from mpx.formats import Format
from mpx.ops.spec import OpSpec
from mpx.training.state_formats import FP32_STATE, StateFormats


class TrainingBackend(Protocol):
    """The protocol methods of mpx.TrainingBackend these ops call (named here: plugins import training, not back)."""

    def unscale_and_check_(
        self,
        grads: Sequence[torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None = None,
    ) -> torch.Tensor: ...

    def masked_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: Mapping[torch.Tensor, torch.Tensor],
        skip: torch.Tensor,
        state_formats: StateFormats | None = None,
    ) -> None: ...

    def cast_back(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None: ...


PROTOCOL_OPS = frozenset({"unscale", "nonfinite_check", "sgd_master_update", "adam_master_update", "cast_back"})
Tensors = tuple[torch.Tensor, ...]


def _fp32(value: torch.Tensor) -> torch.Tensor:
    """An fp32 copy the protocol may change in place (the case's inputs stay as they are)."""
    return value.to(torch.float32, copy=True)


def _unscale(backend: TrainingBackend, grad: torch.Tensor, inv_scale: torch.Tensor) -> Tensors:
    grads = [_fp32(grad)]
    found_inf = torch.zeros(1, dtype=torch.float32, device=grad.device)
    backend.unscale_and_check_(grads, found_inf, _fp32(inv_scale).reshape(1))
    return (grads[0],)


def _nonfinite_check(backend: TrainingBackend, x: torch.Tensor) -> Tensors:
    found_inf = torch.zeros(1, dtype=torch.float32, device=x.device)
    backend.unscale_and_check_([_fp32(x)], found_inf, torch.ones(1, dtype=torch.float32, device=x.device))
    return (found_inf.reshape(()),)


def _step(
    backend: TrainingBackend,
    optimizer: torch.optim.Optimizer,
    master: torch.Tensor,
    grad: torch.Tensor,
    found_inf: torch.Tensor,
) -> None:
    backend.masked_step(optimizer, {master: _fp32(grad)}, found_inf.reshape(()) != 0, FP32_STATE)


def _sgd(backend: TrainingBackend, op: OpSpec, values: Tensors) -> Tensors:
    master, grad, momentum_buffer, found_inf = values
    param = _fp32(master)
    attrs = op.attrs
    optimizer = torch.optim.SGD([param], lr=attrs["lr"], momentum=attrs["momentum"], weight_decay=attrs["weight_decay"])
    optimizer.state[param]["momentum_buffer"] = _fp32(momentum_buffer)
    _step(backend, optimizer, param, grad, found_inf)
    return param, optimizer.state[param]["momentum_buffer"]


def _adam(backend: TrainingBackend, op: OpSpec, values: Tensors) -> Tensors:
    """AdamW at step `attrs['step']`: torch counts the step before it updates, so the state holds one less."""
    master, grad, exp_avg, exp_avg_sq, found_inf = values
    param = _fp32(master)
    attrs = op.attrs
    optimizer = torch.optim.AdamW(
        [param],
        lr=attrs["lr"],
        betas=(attrs["beta1"], attrs["beta2"]),
        eps=attrs["eps"],
        weight_decay=attrs["weight_decay"],
    )
    state = optimizer.state[param]
    state["step"] = torch.tensor(float(attrs["step"] - 1), dtype=torch.float32)
    state["exp_avg"], state["exp_avg_sq"] = _fp32(exp_avg), _fp32(exp_avg_sq)
    _step(backend, optimizer, param, grad, found_inf)
    return param, state["exp_avg"], state["exp_avg_sq"]


def _cast_back(backend: TrainingBackend, fmt: Format, master: torch.Tensor) -> Tensors:
    param = torch.empty(master.shape, dtype=fmt.torch_dtype, device=master.device)
    backend.cast_back([(param, _fp32(master))])
    return (param.float(),)


def run_protocol_op(backend: TrainingBackend, op: OpSpec, fmt: Format, values: Tensors) -> Tensors | None:
    """The op's forward outputs in fp32 computed by `backend`'s protocol; None for ops outside it."""
    if op.name not in PROTOCOL_OPS:
        return None
    if op.name == "unscale":
        return _unscale(backend, *values)
    if op.name == "nonfinite_check":
        return _nonfinite_check(backend, *values)
    if op.name == "sgd_master_update":
        return _sgd(backend, op, values)
    if op.name == "adam_master_update":
        return _adam(backend, op, values)
    return _cast_back(backend, fmt, *values)
