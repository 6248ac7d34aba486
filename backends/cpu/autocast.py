"""Training real torch models on the CPU with emulated low-precision numerics.

Inside `emulated_autocast(policy, backend)`, the ops torch.autocast runs in low precision (linear, matmul,
mm, bmm, addmm, baddbmm, conv, scaled_dot_product_attention) see their float inputs rounded to the
policy's compute format, compute in fp32 (fp32 accumulation) and have their outputs rounded to the
compute format; their gradients are rounded to the backward format (fp8-hybrid: e4m3 forward, e5m2
backward; fp8 GEMMs write bf16, as mpx.ops.OpSpec.output_format says). Every other op runs in fp32.
Rounding follows the backend's overflow ("inf" or "saturate") and subnormal ("keep" or "flush") rules.
With a native backend (CpuBackend(native=True)) this is torch.autocast("cpu", dtype) instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from mpx.errors import PolicyError
from mpx.formats import BF16, FP16, FP32, Format
from mpx.policy import Policy

_LOWP_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {
        F.linear, torch.matmul, torch.mm, torch.bmm, torch.addmm, torch.baddbmm, torch.addbmm,
        torch.conv1d, torch.conv2d, torch.conv3d,
        torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d,
        F.scaled_dot_product_attention,
        torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.Tensor.mm,
        torch.Tensor.bmm, torch.Tensor.addmm, torch.Tensor.baddbmm,
    }
)


def _output_format(fmt: Format) -> Format:
    """fp8 GEMMs write bf16 (as Transformer Engine and torch._scaled_mm do); others write their own format."""
    return BF16 if fmt.is_fp8 else fmt


class _Rounding:
    """Rounds values to one format under one backend's overflow and subnormal rules."""

    def __init__(self, fmt: Format, overflow: str, subnormals: str) -> None:
        self.fmt, self.overflow, self.subnormals = fmt, overflow, subnormals

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fmt == FP32 and self.overflow == "inf" and self.subnormals == "keep":
            return x
        return self.fmt.round(x.float(), overflow=self.overflow, subnormals=self.subnormals).to(x.dtype)


class _RoundTo(torch.autograd.Function):
    """Forward rounds to one format; backward rounds the incoming gradient to another."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, forward_round: _Rounding, backward_round: _Rounding) -> torch.Tensor:
        ctx.backward_round = backward_round
        return forward_round(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        return ctx.backward_round(grad), None, None


class _EmulatedLowp(TorchFunctionMode):
    def __init__(self, policy: Policy, overflow: str, subnormals: str) -> None:
        super().__init__()
        forward, backward = policy.compute, policy.backward
        # an op input: rounded to the compute format; its gradient leaves the op in the backward GEMM's output format
        self.input_rounding = (_Rounding(forward, overflow, subnormals),
                               _Rounding(_output_format(backward), overflow, subnormals))
        # an op output: rounded to the GEMM's output format; the gradient arriving is rounded to the backward format
        self.output_rounding = (_Rounding(_output_format(forward), overflow, subnormals),
                                _Rounding(backward, overflow, subnormals))

    def _round_input(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return _RoundTo.apply(x.float(), *self.input_rounding)
        return x

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        if func not in _LOWP_FUNCTIONS:
            return func(*args, **kwargs)
        dtypes = [a.dtype for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
        out_dtype = dtypes[0] if dtypes else torch.float32
        for dtype in dtypes[1:]:
            out_dtype = torch.promote_types(out_dtype, dtype)
        args = tuple(self._round_input(a) for a in args)
        kwargs = {k: self._round_input(v) for k, v in kwargs.items()}
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return _RoundTo.apply(out, *self.output_rounding).to(out_dtype)
        return out


def check_policy(policy: Policy, native: bool) -> None:
    """Raise PolicyError if this CPU path cannot run `policy`."""
    if native:
        unsupported = [f.name for f in {policy.compute, policy.backward} if f not in (FP32, FP16, BF16)]
        if unsupported:
            raise PolicyError(
                f"torch.autocast on the CPU has no {', '.join(unsupported)} compute; "
                "use the emulated cpu backend (mpx.get_backend('cpu')) for fp8 policies"
            )
        if policy.grads is not None and policy.grads != policy.compute:
            raise PolicyError("torch.autocast computes gradients in the forward format; use the emulated cpu backend")


@contextlib.contextmanager
def emulated_autocast(policy: Policy, backend: Any) -> Iterator[None]:
    """Run the model code inside with `policy`'s compute numerics on the CPU (see the module docstring)."""
    native = bool(getattr(backend, "native", False))
    check_policy(policy, native)
    if policy.compute == FP32 and policy.backward == FP32:
        yield
        return
    if native:
        with torch.autocast("cpu", dtype=policy.compute.torch_dtype):
            yield
        return
    with _EmulatedLowp(policy, getattr(backend, "overflow", "inf"), getattr(backend, "subnormals", "keep")):
        yield
