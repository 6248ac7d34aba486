"""Per-tensor fp8 scales: computed from amax on the device, with no host sync (graph-capturable)."""

from __future__ import annotations

import torch

from ..formats import Format, finite_or_zero
from .recipe import CurrentScaling, DelayedScaling, Fp8Recipe

_FP32_MAX = torch.finfo(torch.float32).max


def scale_from_amax(amax: torch.Tensor, fp8_max: float, margin: int, fallback: torch.Tensor) -> torch.Tensor:
    """(fp8_max / amax) / 2**margin; `fallback` where amax is 0 or not finite; fp32 max instead of inf.

    The scale is never inf, 0 or NaN.
    """
    amax = amax.float()
    scale = (fp8_max / amax) / (2.0**margin)
    usable = torch.isfinite(amax) & (amax > 0) & (scale > 0)
    scale = torch.where(usable, scale, fallback)
    return torch.where(torch.isinf(scale), torch.full_like(scale, _FP32_MAX), scale)


def quantize(x: torch.Tensor, scale: torch.Tensor, fmt: Format, emulated: bool) -> torch.Tensor:
    """x * scale cast to `fmt`: finite values saturate at +-max, inf stays inf (e5m2) or becomes NaN (e4m3).

    emulated=True gives the fp8 values as fp32 (Format.round); otherwise real fp8 tensors.
    """
    scaled = x.float() * scale
    not_finite = scaled if fmt.has_inf else torch.full_like(scaled, float("nan"))
    scaled = torch.where(torch.isfinite(scaled), scaled.clamp(-fmt.max, fmt.max), not_finite)
    return fmt.round(scaled) if emulated else scaled.to(fmt.torch_dtype)


class TensorScaling(torch.nn.Module):
    """The scale of one tensor role of one layer (input, weight or grad_output), as buffers.

    Delayed scaling keeps TE's amax history: slot 0 collects this step's amax; `scale_for` first
    rolls the history and recomputes the scale from it (the previous steps), then records the
    tensor's amax. On an empty history the tensor's own amax gives the scale (TE starts at 1.0).
    Non-finite amaxes (overflowed steps under loss scaling) are not recorded.
    """

    def __init__(self, recipe: Fp8Recipe, fmt: Format) -> None:
        super().__init__()
        self.recipe, self.fmt = recipe, fmt
        self.register_buffer("scale", torch.ones((), dtype=torch.float32))
        if isinstance(recipe, DelayedScaling):
            self.register_buffer("amax_history", torch.zeros(recipe.amax_history_len, dtype=torch.float32))

    def scale_for(self, tensor: torch.Tensor) -> torch.Tensor:
        """The scale to cast `tensor` with now (a 0-d fp32 tensor on its device); updates the state in place."""
        amax = tensor.detach().abs().amax().float()
        if isinstance(self.recipe, CurrentScaling):
            self.scale.copy_(scale_from_amax(amax, self.fmt.max, self.recipe.margin, torch.ones_like(amax)))
            return self.scale.clone()
        self.update()
        history = self.amax_history
        current = scale_from_amax(amax, self.fmt.max, self.recipe.margin, self.scale)
        self.scale.copy_(torch.where((history == 0).all(), current, self.scale))
        recorded = finite_or_zero(amax)
        history[0:1].copy_(torch.maximum(history[0:1], recorded))
        return self.scale.clone()

    def update(self) -> None:
        """Delayed scaling: scale from the history, then roll it so slot 0 is free for the next amax."""
        history = self.amax_history
        amax = history.amax() if self.recipe.amax_compute_algo == "max" else history[0]
        self.scale.copy_(scale_from_amax(amax, self.fmt.max, self.recipe.margin, self.scale))
        if history.numel() > 1:
            history.copy_(torch.roll(history, -1, 0))
        history[0:1].zero_()

    def extra_repr(self) -> str:
        return f"{self.fmt.name}, {type(self.recipe).__name__}"
