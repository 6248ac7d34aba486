"""mpx: hardware-abstracted mixed precision for PyTorch (formats, policies, loss scaling, backends).

The public names load on first use (PEP 562): `import mpx` costs almost nothing until one is read, so the
pytest plugin and the CLI's argument parsing stay light.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from mpx import _legacy

__version__ = "0.2.0"

# public name -> the module that defines it
_HOMES: dict[str, str] = {
    **dict.fromkeys(
        (
            "BackendNotFoundError", "BackendUnavailableError", "CheckpointError", "ConformanceError", "Fp8Error",
            "FormatError", "InspectionError", "LossScaleError", "MasterWeightError", "MpxError", "OpError",
            "OptimizerError",
            "PluginError", "PolicyError", "ScalingError", "StateFormatError", "TrainingError", "TrainingInputError",
        ),
        "mpx.errors",
    ),
    **dict.fromkeys(("FORMATS", "Format", "format"), "mpx.formats"),
    **dict.fromkeys(("Arg", "OpSpec", "Tolerance", "all_ops", "get_op"), "mpx.ops"),
    **dict.fromkeys(
        ("Backend", "BackendSpec", "Support", "TrainingBackend", "get_backend", "hookimpl", "list_backends",
         "reload_plugins"),
        "mpx.plugins",
    ),
    **dict.fromkeys(("PRESETS", "Policy", "policy"), "mpx.policy"),
    **dict.fromkeys(("InspectionReport", "inspect"), "mpx.inspection"),
    **dict.fromkeys(
        ("LEAN_ADAM", "DynamicLossScaler", "LossScaler", "MixedPrecision", "NoOpLossScaler", "StateFormats",
         "StaticLossScaler", "StepResult", "bytes_per_parameter", "has_overflow", "load_checkpoint", "mse_loss",
         "save_checkpoint", "scale_gradients", "state_formats"),
        "mpx.training",
    ),
}  # fmt: skip

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mpx' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next read is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """`mpx.policy` is the function, as in 0.1, though a submodule of the same name exists.

    Importing a submodule binds it on its package; this property keeps the public function in that place
    (the module stays in sys.modules["mpx.policy"]).
    """

    @property
    def policy(self) -> Any:
        from mpx.policy import policy

        return policy

    @policy.setter
    def policy(self, value: Any) -> None:
        """The import system binding the submodule: keep the function."""


sys.modules[__name__].__class__ = _Package
_legacy.install()
