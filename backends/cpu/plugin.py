"""Registers the cpu backend through the same hook a vendor plugin uses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mpx import BackendSpec, hookimpl


def _create(**options: Any) -> Any:
    from .backend import CpuBackend

    return CpuBackend(**options)


@hookimpl
def mpx_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(
        name="cpu",
        factory=_create,
        description=(
            "emulation on the CPU: exact rounding to every format, inf or saturating overflow, "
            "kept or flushed subnormals"
        ),
    )
