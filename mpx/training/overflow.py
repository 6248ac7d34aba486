"""Overflow detection on the device: non-finite gradients, and gradients that saturated at a format's max."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch


def unscale_and_check_(
    grads: Sequence[torch.Tensor],
    found_inf: torch.Tensor,
    inv_scale: torch.Tensor,
    saturation_limit: float | None = None,
) -> torch.Tensor:
    """Multiply `grads` in place by `inv_scale` and OR into `found_inf` (1.0) whether any was inf/NaN.

    With `saturation_limit` (a backend whose overflow saturates), a gradient whose magnitude reached the
    limit before unscaling also counts as overflow: clamped values are finite, so the plain check misses them.
    Everything stays on the device: no value is read back to the host.
    """
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
    for grad in grads:
        groups[(grad.device, grad.dtype)].append(grad)
    for (device, _), group in groups.items():
        target = found_inf if found_inf.device == device else torch.zeros_like(found_inf, device=device)
        flags = [g.abs().amax() >= saturation_limit for g in group if g.numel()] if saturation_limit else []
        if flags:
            target.add_(torch.stack(flags).any()).clamp_(max=1.0)
        torch._amp_foreach_non_finite_check_and_unscale_(group, target, inv_scale.to(device))
        if target is not found_inf:
            found_inf.copy_(torch.maximum(found_inf, target.to(found_inf.device)))
    return found_inf


def has_overflow(grads: Sequence[torch.Tensor | float], saturation_limit: float | None = None) -> torch.Tensor:
    """A 0-d bool tensor: does any gradient hold inf/NaN (or reach `saturation_limit`)? No host sync."""
    tensors = [g if isinstance(g, torch.Tensor) else torch.tensor(float(g)) for g in grads]
    if not tensors:
        return torch.tensor(False)
    flags = [~torch.isfinite(t).all() for t in tensors]
    if saturation_limit is not None:
        flags += [(t.abs() >= saturation_limit).any() for t in tensors if t.numel()]
    return torch.stack([f.to(flags[0].device) for f in flags]).any()
