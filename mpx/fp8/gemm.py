"""FP8 GEMMs: torch._scaled_mm on fp8 tensor cores, or the same math emulated in fp32."""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import BackendUnavailableError

FP8_CAPABILITY = (8, 9)  # Ada, Hopper, Blackwell: fp8 tensor cores
GemmMode = Literal["scaled_mm", "emulated"]


def gemm_mode(device: torch.device, requested: str = "auto") -> GemmMode:
    """How fp8 GEMMs run on `device`: scaled_mm on CUDA GPUs with fp8 tensor cores, emulated on the CPU.

    Raises BackendUnavailableError on a CUDA GPU older than compute capability 8.9.
    """
    if requested == "emulated":
        return "emulated"
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if tuple(capability) < FP8_CAPABILITY:
            name = torch.cuda.get_device_name(device)
            raise BackendUnavailableError(
                f"fp8 GEMMs need an NVIDIA GPU with compute capability >= 8.9 (Ada, Hopper or newer); "
                f"{device} is {name} (sm_{capability[0]}{capability[1]}). Use the bf16-mixed policy here, "
                "or a recipe with gemm='emulated' to emulate fp8 numerics (slow)"
            )
        return "scaled_mm"
    return "scaled_mm" if requested == "scaled_mm" else "emulated"


def fp8_gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    a_scale_inv: torch.Tensor,
    b_scale_inv: torch.Tensor,
    out_dtype: torch.dtype,
    mode: GemmMode,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """(a * a_scale_inv) @ (b * b_scale_inv) + bias for 2-D fp8 operands (M, K) @ (K, N), accumulated in fp32.

    emulated: the operands hold fp8 values in fp32 (or are fp8 tensors), the product is an fp32 matmul.
    scaled_mm: fp8 tensors; K and N are zero-padded to multiples of 16 as torch._scaled_mm requires.
    """
    if mode == "emulated":
        with torch.autocast(a.device.type, enabled=False):
            product = (a.float() @ b.float()) * (a_scale_inv * b_scale_inv)
        if bias is not None:
            product = product + bias.float()
        return product.to(out_dtype)
    inner, cols = a.shape[1], b.shape[1]
    pad_inner, pad_cols = -inner % 16, -cols % 16
    if pad_inner:
        a = _pad(a, (0, pad_inner))
        b = _pad(b, (0, 0, 0, pad_inner))
    if pad_cols:
        b = _pad(b, (0, pad_cols))
    fused_bias = bias is not None and not pad_cols and out_dtype in (torch.bfloat16, torch.float16)
    out = torch._scaled_mm(
        a.contiguous(),
        b.t().contiguous().t() if not _column_major(b) else b,  # cuBLASLt wants b column-major
        a_scale_inv,
        b_scale_inv,
        bias=bias.to(out_dtype) if fused_bias else None,
        out_dtype=out_dtype,
    )
    if pad_cols:
        out = out[:, :cols]
    if bias is not None and not fused_bias:
        out = (out.float() + bias.float()).to(out_dtype)
    return out


def _column_major(t: torch.Tensor) -> bool:
    return t.stride(0) == 1 and t.stride(1) == t.shape[0]


def _pad(t: torch.Tensor, widths: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad an fp8 tensor (fp8 zero is the all-zero byte; pad has no fp8 kernel)."""
    return torch.nn.functional.pad(t.view(torch.uint8), widths).view(t.dtype)
