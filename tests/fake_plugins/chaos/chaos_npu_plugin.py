"""A fault-injection vendor plugin: the cpu emulator, except that forward fp16 of some ops misbehaves.

Every other case (backward, other formats, other ops) runs as on `cpu`. MPX_CHAOS_MARK, when set, names a
file that a hanging op creates before it hangs (so a test knows the hang has begun).
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Iterator

import torch

from mpx import BackendSpec, hookimpl
from mpx.backends.cpu.backend import CpuBackend

LEAKED: list[torch.Tensor] = []


def _hang() -> None:
    mark = os.environ.get("MPX_CHAOS_MARK")
    if mark:
        with open(mark, "a") as handle:
            handle.write(f"{os.getpid()}\n")
    time.sleep(600)


def _segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def _leak() -> None:
    LEAKED.append(torch.empty(4 << 30, dtype=torch.uint8))  # maps 4 GiB and keeps it


FAULTS = {
    "add": lambda: (_ for _ in ()).throw(RuntimeError("chaos: the driver returned an error")),
    "mul": lambda: sys.exit(0),
    "relu": lambda: (_ for _ in ()).throw(KeyboardInterrupt()),
    "gelu": os.abort,
    "silu": _segfault,
    "exp": _hang,
    "reduce_sum": _leak,
}
WRONG = {
    "sqrt": lambda out: torch.full_like(out, float("nan")),  # NaN everywhere
    "where": lambda out: torch.randn_like(out.float()).mul(1e4).to(out.dtype),  # garbage
    "cast": lambda out: out.flatten()[:1].clone(),  # wrong shape
}


class ChaosBackend(CpuBackend):
    name = "chaosnpu"

    def _run(self, op, fmt, inputs, pass_, grad_outputs):
        chaos = pass_ == "forward" and fmt.name == "fp16"
        if chaos and op.name in FAULTS:
            FAULTS[op.name]()
        outputs = super()._run(op, fmt, inputs, pass_, grad_outputs)
        if chaos and op.name in WRONG:
            return tuple(WRONG[op.name](out) for out in outputs)
        return outputs


def _hang_at_start(**options: object) -> ChaosBackend:
    _hang()
    raise AssertionError("unreachable")


def _exit_at_start(**options: object) -> ChaosBackend:
    sys.exit(7)


@hookimpl
def mpx_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(name="chaosnpu", factory=ChaosBackend, description="faults on forward fp16")
    yield BackendSpec(name="chaosnpu-hangstart", factory=_hang_at_start, description="its factory hangs")
    yield BackendSpec(name="chaosnpu-exitstart", factory=_exit_at_start, description="its factory exits")
