"""mpx: hardware-abstracted mixed precision for PyTorch (formats, policies, loss scaling, backends)."""

from .backend import Backend, Support
from .backend_spec import BackendSpec
from .errors import (
    BackendNotFoundError,
    BackendUnavailableError,
    ConformanceError,
    FormatError,
    MpxError,
    OpError,
    PluginError,
    PolicyError,
    ScalingError,
)
from .formats import FORMATS, Format, format
from .hookspecs import hookimpl
from .plugins import get_backend, list_backends, reload_plugins
from .policy import PRESETS, Policy, policy

__version__ = "0.1.0"

__all__ = [
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
