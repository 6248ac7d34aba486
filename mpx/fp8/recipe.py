"""FP8 scaling recipes (Transformer Engine's vocabulary): current and delayed per-tensor scaling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import Fp8Error
from ..formats import FP8_E4M3, FP8_E5M2, Format
from ..formats import format as lookup_format
from ..policy import Policy
from ..policy import policy as lookup_policy

# auto: torch._scaled_mm on CUDA GPUs (compute capability >= 8.9), fp32 emulation elsewhere
GemmChoice = Literal["auto", "scaled_mm", "emulated"]


@dataclass(frozen=True)
class _Recipe:
    margin: int = 0
    forward: Format = FP8_E4M3
    backward: Format = FP8_E5M2
    gemm: GemmChoice = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.margin, int) or self.margin < 0:
            raise Fp8Error(f"fp8 margin must be an integer >= 0 (scale / 2**margin), not {self.margin!r}")
        for field in ("forward", "backward"):
            fmt = lookup_format(getattr(self, field))
            if not fmt.is_fp8:
                raise Fp8Error(f"fp8 recipe {field} format must be fp8_e4m3 or fp8_e5m2, not {fmt.name}")
            object.__setattr__(self, field, fmt)
        if self.gemm not in ("auto", "scaled_mm", "emulated"):
            raise Fp8Error(f"fp8 gemm must be 'auto', 'scaled_mm' or 'emulated', not {self.gemm!r}")


@dataclass(frozen=True)
class CurrentScaling(_Recipe):
    """Per-tensor current scaling: each tensor is scaled by fp8_max / amax(tensor) / 2**margin as it is cast."""


@dataclass(frozen=True)
class DelayedScaling(_Recipe):
    """Delayed scaling: the scale comes from the amax history of previous steps (TE's DelayedScaling).

    scale = fp8_max / amax / 2**margin with amax the max of the last `amax_history_len` amaxes
    ('max') or the previous one ('most_recent').
    """

    amax_history_len: int = 1024
    amax_compute_algo: Literal["max", "most_recent"] = "max"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.amax_history_len, int) or self.amax_history_len < 1:
            raise Fp8Error(f"amax_history_len must be an integer >= 1, not {self.amax_history_len!r}")
        if self.amax_compute_algo not in ("max", "most_recent"):
            raise Fp8Error(f"amax_compute_algo must be 'max' or 'most_recent', not {self.amax_compute_algo!r}")


Fp8Recipe = CurrentScaling | DelayedScaling


def recipe_for_policy(policy: Policy | str = "fp8-hybrid", scaling: str = "delayed", **options: object) -> Fp8Recipe:
    """The recipe whose forward / backward formats are the policy's (fp8-hybrid: e4m3 forward, e5m2 backward)."""
    policy = lookup_policy(policy)
    if not (policy.compute.is_fp8 and policy.backward.is_fp8):
        raise Fp8Error(f"policy {policy} does not compute in fp8; use fp8-hybrid or 'compute=e4m3,grads=e5m2'")
    kinds = {"delayed": DelayedScaling, "current": CurrentScaling}
    if scaling not in kinds:
        raise Fp8Error(f"fp8 scaling must be 'delayed' or 'current', not {scaling!r}")
    return kinds[scaling](forward=policy.compute, backward=policy.backward, **options)
