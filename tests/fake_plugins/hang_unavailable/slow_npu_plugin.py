"""A vendor plugin whose backend's availability check never returns; its other backend is fine."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

from mpx import Backend, BackendSpec, hookimpl


class SlowNpuBackend(Backend):
    name = "slownpu"


def _never_answers() -> str | None:
    time.sleep(3600)
    return None


def _exits() -> str | None:
    sys.exit(4)


@hookimpl
def mpx_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(name="slownpu", factory=SlowNpuBackend, unavailable=_never_answers)
    yield BackendSpec(name="slownpu-exit", factory=SlowNpuBackend, unavailable=_exits)
