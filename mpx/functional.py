"""Seed helpers: scale a list of gradients, detect overflow, and an fp32 MSE loss."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .errors import ScalingError
from .overflow import has_overflow

__all__ = ["has_overflow", "mse_loss", "scale_gradients"]


def scale_gradients(grads: Sequence[float | torch.Tensor], scale: float | torch.Tensor) -> list:
    """Each gradient times `scale` (floats stay floats, tensors stay tensors in their own dtype)."""
    if not isinstance(scale, torch.Tensor):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or math.isnan(scale):
            raise ScalingError(f"scale must be a number or tensor, got {scale!r}")
    return [g * scale if isinstance(g, torch.Tensor) else float(g) * float(scale) for g in grads]


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error computed in fp32 whatever the inputs' formats (torch.autocast's rule for losses)."""
    if pred.shape != target.shape:
        raise ScalingError(f"mse_loss needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return torch.nn.functional.mse_loss(pred.float(), target.float())
