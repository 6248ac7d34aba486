"""CudaBackend: registry ops and torch.autocast training on one NVIDIA GPU."""

from __future__ import annotations

from typing import Any

import torch
from typing_extensions import override

from mpx.errors import BackendUnavailableError, PolicyError
from mpx.formats import BF16, FP8_E5M2, Format
from mpx.fp8.gemm import FP8_CAPABILITY
from mpx.ops.spec import OpSpec, Pass
from mpx.plugins.backend import Shapes, Support, Tensors, TrainingBackend
from mpx.policy import Policy, gemm_output_format

from .device import BF16_CAPABILITY, compute_capability_name, device_index, unavailable
from .execution import run_on_device, strict_numerics
from .fp8_dispatch import FP8_GEMM_OPS


class CudaBackend(TrainingBackend):
    """Runs ops with torch on one GPU (`device='cuda:1'`); trains models under torch.autocast.

    tf32 / reduced_precision_reduction: let fp32 GEMMs use TF32 and fp16/bf16 GEMMs reduce in low
    precision while running ops (off by default, so fp32 means fp32 and GEMMs accumulate in fp32).
    Training is TrainingBackend's torch.autocast('cuda') and protocol defaults (torch's fused optimizer kernels
    take found_inf on the GPU); fp8 policies run bf16 outside Fp8Linear layers.
    """

    name = "cuda"
    overflow = "inf"
    subnormals = "keep"

    def __init__(
        self,
        device: str | int | torch.device = "cuda",
        *,
        tf32: bool = False,
        reduced_precision_reduction: bool = False,
    ) -> None:
        index = device_index(device)
        reason = unavailable(str(index) if index is not None else "")
        if reason:
            raise BackendUnavailableError(f"backend 'cuda' is not available: {reason}")
        self.index = torch.cuda.current_device() if index is None else index
        self.device = f"cuda:{self.index}"
        self.capability: tuple[int, int] = torch.cuda.get_device_capability(self.index)
        self.device_name: str = torch.cuda.get_device_name(self.index)
        self.tf32 = tf32
        self.reduced_precision_reduction = reduced_precision_reduction

    @override
    def support(self, op: OpSpec, fmt: Format, pass_: Pass = "forward", shapes: Shapes | None = None) -> Support:
        """The op's own formats, less what this GPU lacks: bf16 before sm_80, fp8 GEMMs before sm_89."""
        base = super().support(op, fmt, pass_, shapes)
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

    @override
    def _run(self, op: OpSpec, fmt: Format, inputs: Tensors, pass_: Pass, grad_outputs: Tensors | None) -> Tensors:
        with torch.cuda.device(self.index), strict_numerics(self.tf32, self.reduced_precision_reduction):
            if pass_ == "forward":  # precision ops: computed by the training protocol, as MixedPrecision runs it
                on_device = tuple(t.to(self.device) for t in inputs)
                results = self._run_protocol_op(op, fmt, on_device)
                if results is not None:
                    formats = op.output_formats(fmt)
                    return tuple(r.to(f.torch_dtype).cpu() for r, f in zip(results, formats, strict=True))
            return run_on_device(op, fmt, inputs, pass_, grad_outputs, self.device)

    @override
    def check_policy(self, policy: Policy) -> None:
        """Every policy trains here (fp8 ones in bf16 outside Fp8Linear layers) except bf16 on a GPU without it."""
        if gemm_output_format(policy.compute) == BF16 and self.capability < BF16_CAPABILITY:
            raise PolicyError(f"{policy} computes in bf16, which {self._gpu} lacks; use fp16-mixed")

    @property
    def _gpu(self) -> str:
        return f"{self.device} is {self.device_name} ({compute_capability_name(self.capability)})"

    @override
    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "gpu": self.device_name,
            "compute_capability": compute_capability_name(self.capability),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "fp8_gemm": self.capability >= FP8_CAPABILITY,
            "tf32": self.tf32,
        }
