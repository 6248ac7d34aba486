"""Registers the cuda backend; the availability check is cheap and creates no CUDA context."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mpx import BackendSpec, BackendUnavailableError, hookimpl

from .device import unavailable

if TYPE_CHECKING:
    from .backend import CudaBackend


def _create(variant: str = "", **options: Any) -> CudaBackend:
    from .backend import CudaBackend  # torch.cuda work happens only when the backend is asked for

    if variant:
        if "device" in options and options["device"] not in (f"cuda:{variant}", int(variant)):
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
