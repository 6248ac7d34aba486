"""The exception types of mpx: every user-facing failure is one of these."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MpxError(Exception):
    """Base class of every error mpx raises on purpose; the CLI prints it as one line and exits 2."""


class FormatError(MpxError, ValueError):
    """An unknown number format, or a value a format cannot take."""


class PolicyError(MpxError, ValueError):
    """A precision policy that cannot be parsed or that a backend cannot run."""


class OpError(MpxError, ValueError):
    """An unknown op, or an op called with inputs that do not fit it."""


class PluginError(MpxError):
    """A plugin that gave a malformed backend spec, or two plugins that claim the same name."""


class BackendNotFoundError(MpxError, LookupError):
    """No backend of that name is registered."""


class BackendUnavailableError(MpxError, RuntimeError):
    """The backend is registered but cannot run here (no GPU, execution provider missing, ...)."""


class TrainingError(MpxError, ValueError):
    """Base of the training errors below; catch the specific one where you can."""


class LossScaleError(TrainingError):
    """A loss-scaler setting or saved state that cannot work (a scale <= 0, growth <= 1, ...)."""


class MasterWeightError(TrainingError):
    """Master weights that cannot be kept as asked, or saved masters that do not fit this model."""


class OptimizerError(TrainingError):
    """An optimizer that mpx cannot step as asked (fused kernels, CUDA-graph capture, fp32-only paths)."""


class StateFormatError(TrainingError):
    """A storage format for gradients or optimizer state that cannot hold them."""


class Fp8Error(TrainingError):
    """An fp8 recipe or fp8 layer set up or called in a way that cannot work."""


class TrainingInputError(TrainingError):
    """A loss, batch or call order the training step cannot take (not a scalar, no grad, mismatched shapes)."""


ScalingError = TrainingError  # the 0.1 name of TrainingError, kept for one release


class ConformanceError(MpxError, ValueError):
    """Bad input to the conformance suite: unknown scenario, format, case id, output path."""


class CheckpointError(MpxError, OSError):
    """A checkpoint that cannot be written or read (missing folder, missing or foreign file)."""


class InspectionError(MpxError, ValueError):
    """A numerics inspection asked for something it cannot give (unknown format or kind, bad report path)."""


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to `name`, if any is close enough to suggest."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """'unknown backend 'cpuu'; did you mean 'cpu'? Known: cpu, cuda' -- the shape of every lookup error."""
    known = sorted(known)
    suggestion = closest(name, known)
    hint = f"; did you mean {suggestion!r}?" if suggestion else "."
    return f"unknown {kind} {name!r}{hint} Known: {', '.join(known)}"
