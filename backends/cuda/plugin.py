"""Registers the cuda backend; the availability check is cheap and creates no CUDA context."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mpx import BackendSpec, hookimpl


def unavailable(variant: str = "") -> str | None:
    """None when a CUDA GPU can run mpx here, else why not ('' or a GPU index as `variant`)."""
    import torch

    if not torch.backends.cuda.is_built():
        return f"torch was built without CUDA (torch {torch.__version__})"
    count = torch.cuda.device_count()  # asks the driver; no context is created
    if count == 0:
        return "no NVIDIA GPU visible (torch.cuda.device_count() == 0)"
    if variant:
        if not variant.isdigit():
            return f"'cuda:{variant}' is not a GPU index; use cuda:0 .. cuda:{count - 1}"
        if int(variant) >= count:
            return f"cuda:{variant} does not exist: {count} GPU(s) visible (cuda:0 .. cuda:{count - 1})"
    return None


def _create(variant: str = "", **options: Any):
    from .backend import CudaBackend

    if variant:
        if "device" in options and options["device"] not in (f"cuda:{variant}", int(variant)):
            from mpx import BackendUnavailableError

            chosen = options["device"]
            raise BackendUnavailableError(f"cuda:{variant} by name and device={chosen!r} by option disagree; give one")
        options["device"] = f"cuda:{variant}"
    return CudaBackend(**options)


@hookimpl
def mpx_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(
        name="cuda",
        factory=_create,
        unavailable=unavailable,
        accepts_variant=True,
        description="NVIDIA GPUs through PyTorch: torch.autocast fp16/bf16, fused optimizers, fp8 GEMMs (sm_89+)",
    )
