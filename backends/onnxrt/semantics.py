"""Measured numerics of an EP per format: overflow (inf or saturate) and subnormals (keep or flush).

Tiny probe graphs: x (fp32) -> Cast to the format -> Mul by a constant in the format, returned in the
format (fp32, fp16); formats numpy cannot return (bf16, fp8) or the EP cannot multiply are probed with
Cast to the format and back. What the EP returns decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mpx.formats import FP32, Format

from .builder import FLOAT, GraphBuilder
from .native_log import run_options
from .providers import (
    CPU,
    Options,
    Target,
    assigned_providers,
    can_record_assignment,
    create_session,
    session_options,
)


@dataclass(frozen=True)
class Semantics:
    """What one format does on the EP, and through which probe it was seen."""

    overflow: str  # inf | saturate | unknown
    subnormals: str  # keep | flush | unknown
    probe: str  # the probe graph: "Mul" or "Cast", or why none ran
    # non-empty when the probe ran through fallback (a node on another EP than the chosen one): then
    # overflow and subnormals are "unknown" and this says what ran where and what it measured there
    fallback: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "overflow": self.overflow,
            "subnormals": self.subnormals,
            "probe": self.probe,
            "fallback": self.fallback,
        }


def _cast_lanes(fmt: Format) -> bytes:
    builder = GraphBuilder(f"mpx_semantics_{fmt.name}")
    x = builder.cast(builder.input("x", FLOAT, (2,)), fmt.onnx_type)
    builder.output(builder.cast(x, FLOAT), FLOAT)
    return builder.model().SerializeToString()


def _probe_inputs(fmt: Format, with_mul: bool) -> np.ndarray:
    """[value that overflows, value that becomes subnormal], before (Cast probe) or after (Mul probe) x2 / x0.5."""
    if with_mul:
        return np.array([fmt.max, fmt.min_normal], dtype=np.float32)  # * [2, 0.5] below
    beyond = min(2 * fmt.max, float(np.finfo(np.float32).max))  # bf16: fp32's max already rounds to inf
    return np.array([beyond, 3 * fmt.min_subnormal], dtype=np.float32)


def measure(fmt: Format, target: Target, config: Options) -> Semantics:
    """Run the probes for `fmt` on `target`; the Mul probe where the EP runs it, else the Cast probe.

    A probe counts only where it ran on the EP: one whose nodes onnxruntime placed on another EP (CPU
    fallback) measured that EP, so the result is "unknown", with what ran where in `fallback`.
    """
    reasons, through_fallback = [], None
    for with_mul in (True, False) if fmt.torch_dtype in (torch.float32, torch.float16) else (False,):
        name = "Mul" if with_mul else "Cast"
        try:
            model = _mul_lanes(fmt) if with_mul else _cast_lanes(fmt)
            # let nodes fall back where the build records placement, to say where the probe ran and what it saw
            allow = target.provider != CPU and can_record_assignment()
            session = create_session(model, target, session_options(target, config, allow_fallback=allow))
            result = session.run(None, {"x": _probe_inputs(fmt, with_mul)}, run_options())[0]  # error: raised
        except Exception as error:
            reasons.append(f"{name}: {_essence(str(error))}")
            continue
        measured = _classify(fmt, result, name)
        elsewhere = _off_target(session, target)
        if not elsewhere:
            return measured
        through_fallback = through_fallback or Semantics(
            "unknown",
            "unknown",
            name,
            f"the {name} probe ran through fallback ({elsewhere}), not on {target.provider}: "
            f"there it measured overflow={measured.overflow}, subnormals={measured.subnormals}",
        )
    return through_fallback or Semantics("unknown", "unknown", "; ".join(reasons))


def _essence(message: str) -> str:
    """What an onnxruntime error says went wrong (after its 'Status Message:' preamble, where it has one)."""
    return message.rpartition("Status Message:")[2].strip()[:200]


def _off_target(session: Any, target: Target) -> str:
    """'node on EP, ...' for the probe's nodes that did not run on the target EP ('' when all did)."""
    if target.provider == CPU:
        return ""
    assigned = assigned_providers(session)
    if assigned is None:  # no assignment info: a session this build made with fallback cannot be trusted
        return "this onnxruntime build does not record node placement"
    return ", ".join(f"{node} on {ep}" for node, ep in sorted(assigned.items()) if ep != target.provider)


def _mul_lanes(fmt: Format) -> bytes:
    """One Mul per lane: x2 for the overflow lane, x0.5 for the subnormal lane."""
    builder = GraphBuilder(f"mpx_semantics_{fmt.name}")
    x = builder.input("x", FLOAT, (2,))
    if fmt != FP32:
        x = builder.cast(x, fmt.onnx_type)
    y = builder.node("Mul", [x, builder.const(np.array([2.0, 0.5]), fmt.onnx_type)])
    # the result leaves the session in the format itself: a Cast back to fp32 here would let onnxruntime
    # drop the rounding (it removes its own inserted fp16 -> fp32 -> fp16 Cast pairs)
    builder.output(y, fmt.onnx_type)
    return builder.model().SerializeToString()


def _classify(fmt: Format, result: Any, probe: str) -> Semantics:
    big, small = float(result[0]), float(result[1])
    if math.isinf(big) or math.isnan(big):
        overflow = "inf"
    elif abs(big) == fmt.max:
        overflow = "saturate"
    else:
        overflow = "unknown"
    subnormals = "flush" if small == 0.0 else ("keep" if small < fmt.min_normal else "unknown")
    return Semantics(overflow, subnormals, probe)


def summarize(per_format: dict[str, Semantics]) -> tuple[str, str]:
    """The backend-wide (overflow, subnormals): saturate / flush if any measured format does so."""
    overflows = {s.overflow for s in per_format.values()}
    subnormals = {s.subnormals for s in per_format.values()}
    return ("saturate" if "saturate" in overflows else "inf"), ("flush" if "flush" in subnormals else "keep")
