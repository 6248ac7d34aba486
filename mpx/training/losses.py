"""Losses computed in fp32 whatever the inputs' formats (torch.autocast's rule for every loss)."""

from __future__ import annotations

import torch

from mpx.errors import TrainingInputError


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error computed in fp32 whatever the inputs' formats."""
    if pred.shape != target.shape:
        raise TrainingInputError(f"mse_loss needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return torch.nn.functional.mse_loss(pred.float(), target.float())
