"""CudaBackend: registry ops and torch.autocast training on one NVIDIA GPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from mpx.backend import Backend, Support
from mpx.errors import BackendUnavailableError, PolicyError
from mpx.formats import BF16, FP8_E5M2, FP32, Format
from mpx.fp8.gemm import FP8_CAPABILITY
from mpx.ops.spec import OpSpec, Pass
from mpx.policy import Policy
from mpx.policy import policy as lookup_policy

from .execution import FP8_GEMM_OPS, run_on_device, strict_numerics
from .plugin import unavailable

BF16_CAPABILITY = (8, 0)


class CudaBackend(Backend):
    """Runs ops with torch on one GPU (`device='cuda:1'`); trains models under torch.autocast.

    tf32 / reduced_precision_reduction: let fp32 GEMMs use TF32 and fp16/bf16 GEMMs reduce in low
    precision while running ops (off by default, so fp32 means fp32 and GEMMs accumulate in fp32).
    """

    name = "cuda"
    overflow = "inf"
    subnormals = "keep"

    def __init__(self, device: str | int | torch.device = "cuda", *, tf32: bool = False,
                 reduced_precision_reduction: bool = False) -> None:
        index = _device_index(device)
        reason = unavailable(str(index) if index is not None else "")
        if reason:
            raise BackendUnavailableError(f"backend 'cuda' is not available: {reason}")
        self.index = torch.cuda.current_device() if index is None else index
        self.device = f"cuda:{self.index}"
        self.capability: tuple[int, int] = torch.cuda.get_device_capability(self.index)
        self.device_name: str = torch.cuda.get_device_name(self.index)
        self.tf32 = tf32
        self.reduced_precision_reduction = reduced_precision_reduction

    def support(self, op: OpSpec, fmt: Format, pass_: Pass = "forward") -> Support:
        base = super().support(op, fmt, pass_)
        if not base.runs:
            return base
        if fmt == BF16 and self.capability < BF16_CAPABILITY:
            return Support("unsupported", f"bf16 needs compute capability >= 8.0; {self._gpu} has none")
        if not (fmt.is_fp8 and op.autocast == "lowp"):
            return base
        if op.name not in FP8_GEMM_OPS:
            return Support("unsupported", f"torch has fp8 kernels for GEMMs only (torch._scaled_mm), not {op.name}")
        if self.capability < FP8_CAPABILITY:
            return Support("unsupported", f"fp8 GEMMs need compute capability >= 8.9 (fp8 tensor cores); {self._gpu}")
        if pass_ == "backward":
            return Support("upcast", "backward GEMMs start from bf16 grads: fp32 math on the fp8 values, one rounding")
        if fmt == FP8_E5M2:
            return Support("upcast", "cuBLASLt has no e5m2 x e5m2 GEMM: computed in fp32 on the same values")
        return base

    def run(
        self,
        op: OpSpec,
        fmt: Format,
        inputs: tuple[torch.Tensor, ...],
        pass_: Pass = "forward",
        grad_outputs: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        self.require(op, fmt, pass_)
        with torch.cuda.device(self.index), strict_numerics(self.tf32, self.reduced_precision_reduction):
            return run_on_device(op, fmt, inputs, pass_, grad_outputs, self.device)

    @contextlib.contextmanager
    def autocast(self, policy: Policy | str) -> Iterator[None]:
        """torch.autocast('cuda') in the policy's compute format; fp8 policies run bf16 outside Fp8Linear layers."""
        policy = lookup_policy(policy)
        if policy.compute == FP32:
            yield
            return
        dtype = BF16 if policy.compute.is_fp8 else policy.compute
        if dtype == BF16 and self.capability < BF16_CAPABILITY:
            raise PolicyError(f"{policy} computes in bf16, which {self._gpu} lacks; use fp16-mixed")
        with torch.autocast("cuda", dtype=dtype.torch_dtype):
            yield

    @property
    def _gpu(self) -> str:
        return f"{self.device} is {self.device_name} ({_cc(self.capability)})"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "gpu": self.device_name,
            "compute_capability": _cc(self.capability),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "fp8_gemm": self.capability >= FP8_CAPABILITY,
            "tf32": self.tf32,
        }


def _device_index(device: str | int | torch.device) -> int | None:
    if isinstance(device, int):
        return device
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise BackendUnavailableError(f"device {device!r} is not a device name; use 'cuda' or 'cuda:1'") from None
    if parsed.type != "cuda":
        raise BackendUnavailableError(f"the cuda backend runs on CUDA devices, not {device!r}; use the 'cpu' backend")
    return parsed.index


def _cc(capability: tuple[int, int]) -> str:
    return f"sm_{capability[0]}{capability[1]}"
