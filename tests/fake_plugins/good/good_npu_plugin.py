"""A working vendor plugin: one backend that runs, one that says why it cannot."""

from __future__ import annotations

from collections.abc import Iterator

from mpx import Backend, BackendSpec, hookimpl


class GoodNpuBackend(Backend):
    """A backend that only records how it was built."""

    name = "goodnpu"

    def __init__(self, variant: str = "", overflow: str = "inf") -> None:
        self.variant = variant
        self.overflow = overflow


@hookimpl
def mpx_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(
        name="goodnpu", factory=GoodNpuBackend, formats=("fp32", "bf16"), accepts_variant=True, description="a test NPU"
    )
    yield BackendSpec(name="goodnpu-offline", factory=GoodNpuBackend, unavailable=lambda: "its driver is not loaded")
