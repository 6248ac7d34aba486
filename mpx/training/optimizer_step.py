"""Optimizer steps masked by a device flag: a skipped step changes nothing, and nothing is read to the host.

Where the optimizer steps fp32 tensors with fp32 state, torch's own update runs, so every non-skipped step
is bit-identical to plain torch: a fused optimizer's kernel takes found_inf itself; any other optimizer runs
its own step between a snapshot and a torch.where restore. mpx's own fp32 update of SGD, Adam and AdamW is
kept only for what torch's kernels cannot do: optimizer state stored in fp16/bf16 (mpx.LEAN_ADAM) and
fp16/bf16 parameters stepped without fp32 masters.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mpx.formats import FP32
from mpx.training.fused_step import fused_step, supports_fused_step
from mpx.training.state_formats import StateFormats

_STATE_KEYS = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq")}


def _write(target: torch.Tensor, skip: torch.Tensor, new: torch.Tensor) -> None:
    """target <- target where skip, else new (rounded to target's dtype, nearest-even)."""
    if new.dtype == target.dtype:
        torch.where(skip, target, new, out=target)
    else:
        target.copy_(torch.where(skip, target, new))


def _restore(target: torch.Tensor, skip: torch.Tensor, saved: torch.Tensor) -> None:
    """target <- saved where skip, else target unchanged (same dtype: bit for bit)."""
    torch.where(skip, saved, target, out=target)


def _state_tensor(state: dict, key: str, like: torch.Tensor, formats: StateFormats) -> torch.Tensor:
    dtype = formats.for_key(key).torch_dtype
    if key not in state:
        state[key] = torch.zeros_like(like, dtype=dtype, memory_format=torch.preserve_format)
    elif state[key].dtype != dtype:
        state[key] = state[key].to(dtype)
    return state[key]


def _per_tensor(factor: float | torch.Tensor, count: int) -> float | list[torch.Tensor]:
    """A tensor factor (an LR held in a tensor) as a list: foreach ops read a lone tensor scalar on the host."""
    return [factor] * count if isinstance(factor, torch.Tensor) else factor


def _adam(
    group: dict,
    states: list[dict],
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    skip: torch.Tensor,
    formats: StateFormats,
    decoupled: bool,
) -> None:
    """torch.optim.Adam/AdamW's update for one param group, as foreach ops in fp32, written where not skipped.

    Only for reduced-precision state or parameters, which torch's kernels cannot update in fp32.
    """
    beta1, beta2 = group["betas"]
    lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
    for state, param in zip(states, params, strict=True):
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
    steps = [state["step"] for state in states]
    exp_avgs = [_state_tensor(state, "exp_avg", p, formats) for state, p in zip(states, params, strict=True)]
    exp_avg_sqs = [_state_tensor(state, "exp_avg_sq", p, formats) for state, p in zip(states, params, strict=True)]
    new_steps = torch._foreach_add(steps, 1)
    torch._foreach_add_(steps, [(~skip).float()] * len(steps))  # adds exactly 1.0 or 0.0 (a tensor list: no sync)
    g = torch._foreach_neg(grads) if group.get("maximize", False) else grads
    p32 = [p.float() for p in params]
    if weight_decay and decoupled:
        p32 = torch._foreach_mul(p32, _per_tensor(1 - lr * weight_decay, len(p32)))
    elif weight_decay:
        g = torch._foreach_add(g, p32, alpha=weight_decay)
    m = torch._foreach_lerp([t.float() for t in exp_avgs], g, 1 - beta1)
    v = torch._foreach_mul([t.float() for t in exp_avg_sqs], beta2)
    torch._foreach_addcmul_(v, g, g, value=1 - beta2)
    bias_correction1 = torch._foreach_neg(torch._foreach_pow(beta1, new_steps))
    torch._foreach_add_(bias_correction1, 1)
    bias_correction2 = torch._foreach_neg(torch._foreach_pow(beta2, new_steps))
    torch._foreach_add_(bias_correction2, 1)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, torch._foreach_sqrt(bias_correction2))
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(m, denom)
    step_sizes = torch._foreach_reciprocal(bias_correction1)
    torch._foreach_mul_(step_sizes, _per_tensor(-lr, len(step_sizes)))
    torch._foreach_mul_(update, step_sizes)
    new_params = torch._foreach_add(p32, update)
    for targets, values in ((params, new_params), (exp_avgs, m), (exp_avg_sqs, v)):
        for target, value in zip(targets, values, strict=True):
            _write(target, skip, value)


def _sgd(
    group: dict, state: dict, param: torch.Tensor, grad: torch.Tensor, skip: torch.Tensor, formats: StateFormats
) -> None:
    momentum, dampening, weight_decay = group["momentum"], group["dampening"], group["weight_decay"]
    g = -grad if group.get("maximize", False) else grad
    p32 = param.float()
    if weight_decay:
        g = g + weight_decay * p32
    if momentum:
        if state.get("momentum_buffer", 0) is None:
            del state["momentum_buffer"]
        buffer = _state_tensor(state, "momentum_buffer", param, formats)
        # torch's formula; from a zero buffer it gives torch's first step (buffer = grad) when dampening is 0
        new_buffer = torch.add(buffer.float() * momentum, g, alpha=1 - dampening)
        _write(buffer, skip, new_buffer)
        g = g + momentum * new_buffer if group["nesterov"] else new_buffer
    _write(param, skip, p32 - g * group["lr"])


def _own_update(optimizer: torch.optim.Optimizer) -> str | None:
    """'adam', 'adamw', 'sgd' when mpx's masked update reproduces this optimizer, else None."""
    kind = type(optimizer)
    if kind is torch.optim.SGD:
        return "sgd"
    if kind in (torch.optim.Adam, torch.optim.AdamW):
        groups = optimizer.param_groups  # a group may differ from the defaults
        if any(g.get("amsgrad") or g.get("differentiable") for g in groups):
            return None
        decoupled = {kind is torch.optim.AdamW or g.get("decoupled_weight_decay", False) for g in groups}
        if len(decoupled) != 1:
            return None
        return "adamw" if decoupled.pop() else "adam"
    return None


def masked_step(
    optimizer: torch.optim.Optimizer,
    grads: dict[torch.Tensor, torch.Tensor],
    skip: torch.Tensor,
    formats: StateFormats,
) -> None:
    """Step `optimizer` with fp32 `grads` (keyed by the tensors it optimizes) unless the 0-d bool `skip` is set."""
    if _fused_fits(optimizer, grads, formats):
        _fused_step(optimizer, grads, skip)
        return
    kind = _own_update(optimizer)
    if kind is None or not _needs_own_update(kind, grads, formats):
        _generic_step(optimizer, grads, skip)
        return
    with torch.no_grad():
        for group in optimizer.param_groups:
            params = [p for p in group["params"] if p in grads]
            if kind == "sgd":
                for param in params:
                    _sgd(group, optimizer.state[param], param, grads[param], skip, formats)
            elif params:
                states = [optimizer.state[p] for p in params]
                _adam(group, states, params, [grads[p] for p in params], skip, formats, decoupled=kind == "adamw")


def _needs_own_update(kind: str, grads: dict[torch.Tensor, torch.Tensor], formats: StateFormats) -> bool:
    """Reduced-precision state or parameters: torch's step would do its arithmetic in that format."""
    return any(formats.for_key(k) != FP32 for k in _STATE_KEYS[kind]) or any(p.dtype != torch.float32 for p in grads)


def _fused_fits(
    optimizer: torch.optim.Optimizer, grads: dict[torch.Tensor, torch.Tensor], formats: StateFormats
) -> bool:
    """torch's fused kernels take found_inf themselves when everything they step is fp32 with fp32 state."""
    return supports_fused_step(optimizer) and not formats.state and all(p.dtype == torch.float32 for p in grads)


def _fused_step(optimizer: torch.optim.Optimizer, grads: dict[torch.Tensor, torch.Tensor], skip: torch.Tensor) -> None:
    """torch's fused kernel skips the update and undoes the step count when found_inf is set (no host sync)."""
    for param, grad in grads.items():
        param.grad = grad
    fused_step(optimizer, None, skip)


# Devices whose tensors live in host memory: reading the skip flag there is a memory read, not a device sync.
HOST_DEVICES = ("cpu",)


def _on(flag: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The flag on `device`: a copy only for state torch keeps elsewhere (a non-capturable CUDA step count: a sync)."""
    return flag if flag.device == device else flag.to(device)


def _generic_step(
    optimizer: torch.optim.Optimizer, grads: dict[torch.Tensor, torch.Tensor], skip: torch.Tensor
) -> None:
    """Run the optimizer's own step unless `skip` is set: plain torch's numbers, bit for bit.

    With the flag in host memory (CPU training) that is a branch. On an accelerator, reading the flag would
    sync, so the step runs and torch.where restores everything it touched where `skip` is set (a copy of
    parameters and state per step: the price of no sync; fused optimizers avoid it).
    """
    for param, grad in grads.items():
        if param.grad is not grad:  # fp32 parameters: unscaled in place already
            param.grad = grad if grad.dtype == param.dtype else grad.to(param.dtype)
    if skip.device.type in HOST_DEVICES:
        if not bool(skip):
            with _foreach_on_host(optimizer):
                optimizer.step()
        return
    states = optimizer.state
    if any(not isinstance(v, torch.Tensor | None) for s in states.values() for v in s.values()):
        warnings.warn(
            f"{type(optimizer).__name__} keeps non-tensor state: mpx reads the skip flag on the host to mask its step",
            stacklevel=3,
        )
        if not bool(skip):  # the only host sync, for optimizers whose state torch.where cannot restore
            optimizer.step()
        return
    with torch.no_grad():
        params = [p for g in optimizer.param_groups for p in g["params"] if p in grads]
        saved_params = [p.clone() for p in params]
        saved_state = {
            p: {k: v.clone() for k, v in states[p].items() if isinstance(v, torch.Tensor)}
            for p in params
            if p in states
        }
        optimizer.step()
        for param, saved in zip(params, saved_params, strict=True):
            _restore(param, _on(skip, param.device), saved)
        for param in params:
            before = saved_state.get(param, {})
            for key, value in states[param].items():
                if isinstance(value, torch.Tensor):
                    old = before[key] if key in before else torch.zeros_like(value)
                    _restore(value, _on(skip, value.device), old)


# Optimizers whose foreach step is bit-identical to their single-tensor step on the CPU (checked over 50 steps in
# tests/test_optimizer_foreach.py; NAdam, RAdam and ASGD are not: their foreach bias corrections round differently).
FOREACH_BIT_IDENTICAL = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adamax,
    torch.optim.Adadelta,
)


@contextmanager
def _foreach_on_host(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Run torch's foreach implementation for groups that left `foreach` unset, on CPU tensors.

    torch picks the single-tensor loop on the CPU (one Python call per op per tensor); the foreach step
    computes the same numbers bit for bit for FOREACH_BIT_IDENTICAL, in a few C++ calls. Restored afterwards.
    """
    chosen = []
    if type(optimizer) in FOREACH_BIT_IDENTICAL:
        for group in optimizer.param_groups:
            if group.get("foreach", False) is None and _foreach_fits(group, optimizer.state):
                group["foreach"] = True
                chosen.append(group)
    try:
        yield
    finally:
        for group in chosen:
            group["foreach"] = None


def _foreach_fits(group: dict, state: dict) -> bool:
    """Plain dense real CPU tensors whose gradient and state share the parameter's dtype; no differentiable or
    fused step (foreach kernels refuse mixed dtypes, which the single-tensor loop takes: e.g. Adagrad's sum
    made in fp16 before mpx gave the optimizer fp32 masters)."""
    if group.get("differentiable") or group.get("fused"):
        return False
    return all(_plain(p, state.get(p, {})) for p in group["params"])


def _plain(param: torch.Tensor, state: dict) -> bool:
    if param.device.type != "cpu" or not param.is_floating_point():
        return False
    if param.grad is not None and (param.grad.is_sparse or param.grad.dtype != param.dtype):
        return False
    return all(v.dtype == param.dtype for k, v in state.items() if k != "step" and isinstance(v, torch.Tensor))


def has_own_update(optimizer: torch.optim.Optimizer) -> bool:
    return _own_update(optimizer) is not None
