"""Optimizer steps masked by a device flag: a skipped step changes nothing, and nothing is read to the host.

SGD, Adam and AdamW get their own update here (fp32 arithmetic, state stored in chosen formats, under
torch.optim's state keys so optimizer.state_dict() still works). Any other optimizer runs its own step
between a snapshot and a torch.where restore.
"""

from __future__ import annotations

import warnings

import torch

from mpx.training.fused_step import fused_step, supports_fused_step
from mpx.training.state_formats import StateFormats


def _write(target: torch.Tensor, skip: torch.Tensor, new: torch.Tensor) -> None:
    """target <- target where skip, else new (rounded to target's dtype, nearest-even)."""
    if new.dtype == target.dtype:
        torch.where(skip, target, new, out=target)
    else:
        target.copy_(torch.where(skip, target, new))


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


def _fused_kernel_fits(*tensor_lists: list[torch.Tensor]) -> bool:
    """fp32 parameters and state on a device torch has fused Adam kernels for."""
    return all(t.dtype == torch.float32 and t.device.type in ("cpu", "cuda") for ts in tensor_lists for t in ts)


def _adam(
    group: dict,
    states: list[dict],
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    skip: torch.Tensor,
    formats: StateFormats,
    decoupled: bool,
) -> None:
    """torch.optim.Adam/AdamW's update for one param group, as foreach ops in fp32, written where not skipped."""
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
    if _fused_kernel_fits(params, exp_avgs, exp_avg_sqs):
        # torch's own fused kernel: reads found_inf on the device, returns early when it is set
        kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
        kernel(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=weight_decay,
            eps=eps,
            amsgrad=False,
            maximize=group.get("maximize", False),
            grad_scale=None,
            found_inf=skip.float(),
        )
        return
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
    kind = _own_update(optimizer)
    if kind is None:
        _generic_step(optimizer, grads, skip)
        return
    if kind != "sgd" and _fused_fits(optimizer, grads, formats):
        _fused_step(optimizer, grads, skip)
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


def _fused_fits(
    optimizer: torch.optim.Optimizer, grads: dict[torch.Tensor, torch.Tensor], formats: StateFormats
) -> bool:
    """torch's fused Adam/AdamW takes found_inf itself when everything it steps is fp32 with fp32 state."""
    return supports_fused_step(optimizer) and not formats.state and all(p.dtype == torch.float32 for p in grads)


def _fused_step(optimizer: torch.optim.Optimizer, grads: dict[torch.Tensor, torch.Tensor], skip: torch.Tensor) -> None:
    """torch's fused kernel skips the update and undoes the step count when found_inf is set (no host sync)."""
    for param, grad in grads.items():
        param.grad = grad
    fused_step(optimizer, None, skip)


def _generic_step(
    optimizer: torch.optim.Optimizer, grads: dict[torch.Tensor, torch.Tensor], skip: torch.Tensor
) -> None:
    """Run the optimizer's own step, then restore everything it touched where `skip` is set."""
    for param, grad in grads.items():
        param.grad = grad.to(param.dtype)
    states = optimizer.state
    if any(not isinstance(v, torch.Tensor) for s in states.values() for v in s.values()):
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
        saved_state = {p: {k: v.clone() for k, v in states[p].items()} for p in params if p in states}
        optimizer.step()
        for param, saved in zip(params, saved_params, strict=True):
            param.copy_(torch.where(skip, saved, param))
        for param in params:
            before = saved_state.get(param, {})
            for key, value in states[param].items():
                if isinstance(value, torch.Tensor):
                    value.copy_(torch.where(skip, before[key] if key in before else torch.zeros_like(value), value))


def has_own_update(optimizer: torch.optim.Optimizer) -> bool:
    return _own_update(optimizer) is not None
