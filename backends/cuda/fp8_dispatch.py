"""fp8 GEMMs through torch._scaled_mm: a TorchFunctionMode that routes matmul-family calls on fp8 tensors.

torch has fp8 kernels for GEMMs only; an op's reference written with matmul / linear / addmm runs its GEMMs
in fp8 with fp32 accumulation inside `Fp8GemmMode`, and everything else as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from typing_extensions import override

from mpx.formats import FP8_E5M2
from mpx.fp8.gemm import fp8_gemm

# ops whose reference is a plain matmul / linear: the ones torch._scaled_mm can run in fp8
FP8_GEMM_OPS = frozenset({"matmul", "linear", "mm", "bmm", "addmm"})
_MATMULS = (
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.mm,
    torch.Tensor.mm,
    torch.bmm,
    torch.Tensor.bmm,
)


class Fp8GemmMode(TorchFunctionMode):
    """Routes matmul-family calls on fp8 tensors to torch._scaled_mm (unit scales, fp32 output)."""

    @override
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if not any(t.dtype.itemsize == 1 and t.is_floating_point() for t in tensors):
            return func(*args, **kwargs)
        if func in (torch.nn.functional.linear,):
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            out = fp8_matmul(x, weight.t())
            return out if bias is None else out + bias.float()
        if func in _MATMULS:
            return fp8_matmul(args[0], args[1])
        if func is torch.Tensor.__rmatmul__:
            return fp8_matmul(args[1], args[0])
        if func in (torch.addmm, torch.Tensor.addmm):
            return args[0].float() + fp8_matmul(args[1], args[2])
        return func(*args, **kwargs)


def fp8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for fp8 tensors with fp32 accumulation and an fp32 result (torch.matmul's broadcasting)."""
    if a.dtype == b.dtype == FP8_E5M2.torch_dtype or a.dtype.itemsize != 1 or b.dtype.itemsize != 1:
        # cuBLASLt has no e5m2 x e5m2 GEMM: the same exact values in fp32 give the same fp32-accumulated result
        return torch.matmul(a.float(), b.float())
    if a.dim() == 1:
        return fp8_matmul(a.unsqueeze(0), b).squeeze(-2)
    if b.dim() == 1:
        return fp8_matmul(a, b.unsqueeze(-1)).squeeze(-1)
    if b.dim() == 2:
        flat = _scaled_mm_2d(a.reshape(-1, a.shape[-1]), b)
        return flat.reshape(*a.shape[:-1], b.shape[-1])
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = a.float().expand(*batch, *a.shape[-2:]).reshape(-1, *a.shape[-2:]).to(a.dtype)
    b = b.float().expand(*batch, *b.shape[-2:]).reshape(-1, *b.shape[-2:]).to(b.dtype)
    products = torch.stack([_scaled_mm_2d(x, y) for x, y in zip(a, b, strict=True)])
    return products.reshape(*batch, a.shape[-2], b.shape[-1])


def _scaled_mm_2d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch._scaled_mm with unit scales (fp8_gemm pads K and N to multiples of 16 with exact zeros)."""
    one = torch.ones((), dtype=torch.float32, device=a.device)
    return fp8_gemm(a, b, one, one, torch.float32, "scaled_mm")
