"""Fused optimizer steps that take the loss scale and found_inf as device tensors (no host sync).

torch's fused Adam / AdamW / SGD (CUDA, and CPU since torch 2.4) unscale the gradients inside the
update kernel and skip the update, step count included, where found_inf is set: the fast path
of a mixed-precision step on a GPU.
"""

from __future__ import annotations

import torch

from mpx.errors import OptimizerError

FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


def supports_fused_step(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` runs a fused kernel that takes grad_scale / found_inf (built with fused=True)."""
    return (
        isinstance(optimizer, FUSED_OPTIMIZERS)
        and getattr(optimizer, "_step_supports_amp_scaling", False)
        and all(group.get("fused") for group in optimizer.param_groups)
    )


def enable_fused(optimizer: torch.optim.Optimizer) -> bool:
    """Switch an Adam / AdamW / SGD built without fused=True to its fused kernel, before its first step.

    Returns whether the optimizer is fused now. Leaves it untouched (False) when it is another
    optimizer, already has state, is differentiable, or holds parameters fused kernels do not take.
    """
    if supports_fused_step(optimizer):
        return True
    if not isinstance(optimizer, FUSED_OPTIMIZERS) or optimizer.state:
        return False
    groups = optimizer.param_groups
    if any(group.get("differentiable") for group in groups):
        return False
    params = [p for group in groups for p in group["params"]]
    if not params or not all(p.is_floating_point() and p.device.type in ("cuda", "cpu") for p in params):
        return False
    for group in (*groups, optimizer.defaults):
        group["fused"], group["foreach"] = True, False
    optimizer._step_supports_amp_scaling = True
    return True


def fused_step(
    optimizer: torch.optim.Optimizer,
    grad_scale: torch.Tensor | None,
    found_inf: torch.Tensor,
) -> None:
    """One fused optimizer step that divides the gradients by `grad_scale` (None: already unscaled) and
    changes nothing -- parameters, moments, step count -- where `found_inf` is nonzero.

    Both are fp32 device tensors with one element; nothing is read back to the host.
    """
    if not supports_fused_step(optimizer):
        raise OptimizerError(
            f"{type(optimizer).__name__} has no fused step taking grad_scale/found_inf; build Adam, AdamW or SGD "
            "with fused=True (or call mpx.fused_optim.enable_fused before the first step), or use a masked update"
        )
    for name, tensor in (("grad_scale", grad_scale), ("found_inf", found_inf)):
        if tensor is not None and (not isinstance(tensor, torch.Tensor) or tensor.numel() != 1):
            raise OptimizerError(f"{name} must be a one-element tensor on the parameters' device, not {tensor!r:.60}")
    # the fused kernels update 0-d step counters in place: give them 0-d views (no copy, no sync)
    optimizer.grad_scale = None if grad_scale is None else grad_scale.float().reshape(())
    optimizer.found_inf = found_inf.float().reshape(())
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale
        del optimizer.found_inf
