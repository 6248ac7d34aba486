"""`MixedPrecision.metrics()`: the numbers a logger (TensorBoard, W&B) wants each step, as device tensors."""

from __future__ import annotations

from typing import Any

import torch


def trainer_metrics(trainer: Any) -> dict[str, torch.Tensor]:
    """loss_scale, skipped_steps, skipped (the last step) and grad_norm of a MixedPrecision; nothing syncs.

    grad_norm is the 2-norm of the last step's unscaled gradients, measured from the first call of metrics() on:
    NaN until a step measured it.
    """
    trainer._track_grad_norm = True
    device = trainer.skipped_steps.device
    last = trainer._last
    norm = trainer._grad_norm
    return {
        "loss_scale": trainer.scaler.loss_scale,
        "skipped_steps": trainer.skipped_steps,
        "skipped": last.skipped if last is not None else torch.zeros((), dtype=torch.bool, device=device),
        "grad_norm": norm if norm is not None else torch.full((), float("nan"), device=device),
    }
