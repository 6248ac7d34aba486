"""mpx: hardware-abstracted mixed precision for PyTorch (formats, policies, loss scaling, backends)."""

from .backend import Backend, Support
from .backend_spec import BackendSpec
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import (
    BackendNotFoundError,
    BackendUnavailableError,
    CheckpointError,
    ConformanceError,
    FormatError,
    MpxError,
    OpError,
    PluginError,
    PolicyError,
    ScalingError,
)
from .formats import FORMATS, Format, format
from .functional import has_overflow, mse_loss, scale_gradients
from .hookspecs import hookimpl
from .ops import Arg, OpSpec, Tolerance, all_ops, get_op
from .optim_state import LEAN_ADAM, StateFormats, bytes_per_parameter, state_formats
from .plugins import get_backend, list_backends, reload_plugins
from .policy import PRESETS, Policy, policy
from .scaling import DynamicLossScaler, LossScaler, NoOpLossScaler, StaticLossScaler
from .trainer import MixedPrecision, StepResult

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DynamicLossScaler",
    "LEAN_ADAM",
    "LossScaler",
    "MixedPrecision",
    "NoOpLossScaler",
    "StateFormats",
    "StaticLossScaler",
    "StepResult",
    "Arg",
    "OpSpec",
    "Tolerance",
    "all_ops",
    "get_op",
    "bytes_per_parameter",
    "has_overflow",
    "load_checkpoint",
    "mse_loss",
    "save_checkpoint",
    "scale_gradients",
    "state_formats",
    "FORMATS",
    "PRESETS",
    "Backend",
    "BackendNotFoundError",
    "BackendSpec",
    "BackendUnavailableError",
    "ConformanceError",
    "Format",
    "FormatError",
    "MpxError",
    "OpError",
    "PluginError",
    "Policy",
    "PolicyError",
    "ScalingError",
    "Support",
    "format",
    "get_backend",
    "hookimpl",
    "list_backends",
    "policy",
    "reload_plugins",
]
