"""Measuring a backend's overflow (inf / saturate) and subnormal (keep / flush) behaviour, per format.

Each measurement is a case of its own (`semantics/fp16/overflow`): it runs a probe through the backend -- `add`
where the format has arithmetic ops and the backend runs it, else the fp32 -> format `cast` -- reads what came
back, and passes when the measured behaviour is the one the backend declares (Backend.overflow /
Backend.subnormals), since every other case's reference is rounded under that declaration. A probe that runs
through fallback (support() says so, or the backend's own `semantics[fmt].fallback`) measured another device:
the case is `fallback` with the measurement `unknown`, never `pass`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from mpx.formats import FP32, Format
from mpx.formats import format as lookup_format
from mpx.ops import OpSpec, all_ops
from mpx.plugins import Backend

from .cases import Case
from .report import CaseResult
from .status import Status


def probe_ops(fmt: Format) -> list[OpSpec]:
    """The ops that can measure `fmt`, best first: add (two args in the format), cast (one fp32 arg)."""
    ops = {op.name: op for op in all_ops()}
    candidates = [ops.get("add"), ops.get("cast") if fmt != FP32 else None]
    return [op for op in candidates if op is not None and op.supports_format(fmt)]


def _probe_inputs(op_name: str, fmt: Format, prop: str) -> tuple[torch.Tensor, ...]:
    """Inputs whose exact result overflows (overflow) or is the subnormal min_normal / 2 (subnormals)."""
    if op_name == "add":
        if prop == "overflow":
            a = b = torch.tensor([fmt.max, -fmt.max], dtype=torch.float64)
        else:  # both inputs normal, the exact sum subnormal: input flushing cannot hide output flushing
            a = torch.tensor([1.5 * fmt.min_normal, -1.5 * fmt.min_normal], dtype=torch.float64)
            b = -a / 1.5
        return a.to(fmt.torch_dtype), b.to(fmt.torch_dtype)
    if prop == "overflow":
        return (torch.tensor([2 * fmt.max, -2 * fmt.max], dtype=torch.float32),)
    return (torch.tensor([fmt.min_normal / 2, -fmt.min_normal / 2], dtype=torch.float32),)


def classify(prop: str, fmt: Format, got: torch.Tensor) -> str:
    """What the results show: inf / saturate for overflow, keep / flush for subnormals, or 'unclear: ...'."""
    values = got.detach().to(torch.float64).flatten().tolist()
    if prop == "overflow":
        overflow_value = float("inf") if fmt.has_inf else float("nan")
        if all(v != v for v in values) and not fmt.has_inf:
            return "inf"
        if values == [overflow_value, -overflow_value]:
            return "inf"
        if values == [fmt.max, -fmt.max]:
            return "saturate"
    else:
        if values == [fmt.min_normal / 2, -fmt.min_normal / 2]:
            return "keep"
        if values == [0.0, 0.0]:
            return "flush"
    return f"unclear: got {values}"


def run_semantic_case(backend: Backend, case: Case) -> CaseResult:
    """Measure one property of one format; never raises."""
    start = time.perf_counter()
    fmt, prop = lookup_format(case.format), case.input_class

    def result(status: Status, detail: str, measured: str = "", support: str = "") -> CaseResult:
        elapsed = time.perf_counter() - start
        return CaseResult(
            case.id, case.op, case.format, case.pass_, prop, status, None, detail, elapsed, support, measured
        )

    candidates = probe_ops(fmt)
    if not candidates:
        return result(Status.UNSUPPORTED, f"no probe op (add or cast) is defined in {fmt.name}")
    declared = backend.overflow if prop == "overflow" else backend.subnormals
    try:
        supports = [(op, backend.support(op, fmt, "forward")) for op in candidates]
        op, support = next(((o, s) for o, s in supports if s.runs), supports[-1])
        if not support.runs:
            return result(
                Status.UNSUPPORTED,
                f"cannot measure {prop}: {op.name} in {fmt.name} is unsupported: {support.reason}",
                support="unsupported",
            )
        off_device = _fallback(backend, fmt, support)
        if off_device:  # a measurement off the device says nothing about the device: never `pass`
            return result(Status.FALLBACK, f"{prop} unknown: {off_device}", "unknown", "fallback")
        outputs = backend.run(op, fmt, _probe_inputs(op.name, fmt, prop), "forward", None)
        measured = classify(prop, fmt, outputs[0])
    except Exception as error:
        return result(Status.ERROR, f"{type(error).__name__}: {error}")
    via = f"{op.name} in {fmt.name}" + (f" ({support.status})" if support.status != "native" else "")
    if measured == declared:
        return result(Status.PASS, f"{prop} {measured} (measured with {via}), as declared", measured, support.status)
    return result(Status.FAIL, f"declares {prop}={declared} but {via} measures {measured}", measured, support.status)


def _fallback(backend: Backend, fmt: Format, support: Any) -> str:
    """Why the probe would not run on the backend's device ('' when it does).

    The probe op's support() may say fallback; a backend that measures its semantics itself (onnxrt:
    `semantics[fmt].fallback`) says so when its own probe graph ran through fallback.
    """
    if support.status == "fallback":
        return support.reason or f"the probe runs off {backend.name}'s device"
    try:
        measured = getattr(backend, "semantics", None)
    except Exception:  # measuring failed: the probe case below says what happened
        return ""
    entry = measured.get(fmt.name) if isinstance(measured, dict) else None
    reason = getattr(entry, "fallback", "")
    return reason if isinstance(reason, str) else ""
