"""Registers `onnxrt` (the first EP that works here) and `onnxrt:<ExecutionProvider>` through the mpx hook."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mpx import BackendSpec, hookimpl

DESCRIPTION = "ONNX Runtime: ops as ONNX graphs on the first EP that works here, or onnxrt:<ExecutionProvider>"


def _create(variant: str = "", **options: Any) -> Any:
    from .backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(provider=variant or None, **options)


def _unavailable(variant: str = "") -> str | None:
    from .providers import unavailable

    return unavailable(variant)


def _details() -> str:
    """The plugin EPs and their devices, and a warning when two onnxruntime distributions share one folder."""
    from .distributions import conflict
    from .ep_libraries import summary

    return "; ".join(part for part in (summary(), conflict()) if part)


@hookimpl
def mpx_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(
        name="onnxrt",
        factory=_create,
        unavailable=_unavailable,
        accepts_variant=True,
        description=DESCRIPTION,
        details=_details,
    )
