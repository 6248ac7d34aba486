"""Training with mixed precision: the trainer, loss scaling, overflow checks, master weights and their state."""

from mpx.training.checkpoint import load_checkpoint, save_checkpoint
from mpx.training.loss_scaling import (
    DynamicLossScaler,
    LossScaler,
    NoOpLossScaler,
    StaticLossScaler,
    make_scaler,
    scale_gradients,
)
from mpx.training.losses import mse_loss
from mpx.training.memory import bytes_per_parameter
from mpx.training.overflow import has_overflow
from mpx.training.state_formats import FP32_STATE, LEAN_ADAM, StateFormats, state_formats
from mpx.training.trainer import MixedPrecision, StepResult

__all__ = [
    "FP32_STATE",
    "LEAN_ADAM",
    "DynamicLossScaler",
    "LossScaler",
    "MixedPrecision",
    "NoOpLossScaler",
    "StateFormats",
    "StaticLossScaler",
    "StepResult",
    "bytes_per_parameter",
    "has_overflow",
    "load_checkpoint",
    "make_scaler",
    "mse_loss",
    "save_checkpoint",
    "scale_gradients",
    "state_formats",
]
