"""Runs a registry op with torch on a device, in the case's format, the way torch.autocast would.

Device-agnostic on purpose: the cuda backend runs it on a GPU, the tests run the same code on the CPU.
Inputs of ops that autocast keeps in fp32 are upcast first; fp8 GEMMs go through torch._scaled_mm
(fp8_dispatch). The call is checked by Backend.run before it gets here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from mpx.errors import OpError
from mpx.formats import Format
from mpx.ops.spec import OpSpec, Pass

from .fp8_dispatch import Fp8GemmMode

_MOVED_TO_FP8_DISPATCH = ("FP8_GEMM_OPS", "fp8_matmul")  # names of mpx 0.1 that moved to fp8_dispatch in 0.2


def __getattr__(name: str) -> Any:
    """The 0.1 names that moved to fp8_dispatch, with a DeprecationWarning naming the new path."""
    if name not in _MOVED_TO_FP8_DISPATCH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import fp8_dispatch

    warnings.warn(
        f"{__name__}.{name} moved to {fp8_dispatch.__name__}.{name} in mpx 0.2; the old path goes away in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(fp8_dispatch, name)


@contextlib.contextmanager
def strict_numerics(tf32: bool = False, reduced_precision_reduction: bool = False) -> Iterator[None]:
    """fp32 means fp32 (no TF32) and fp16/bf16 GEMMs accumulate in fp32 unless asked otherwise."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (
        matmul.allow_tf32,
        cudnn.allow_tf32,
        matmul.allow_fp16_reduced_precision_reduction,
        matmul.allow_bf16_reduced_precision_reduction,
    )
    matmul.allow_tf32 = cudnn.allow_tf32 = tf32
    matmul.allow_fp16_reduced_precision_reduction = reduced_precision_reduction
    matmul.allow_bf16_reduced_precision_reduction = reduced_precision_reduction
    try:
        yield
    finally:
        (
            matmul.allow_tf32,
            cudnn.allow_tf32,
            matmul.allow_fp16_reduced_precision_reduction,
            matmul.allow_bf16_reduced_precision_reduction,
        ) = saved


def compute_dtype(op: OpSpec, fmt: Format, role: str, storage: torch.dtype) -> torch.dtype:
    """The dtype an argument is computed in: autocast's fp32 list upcasts; fp8 is a GEMM-only format."""
    if role != "input":
        return storage
    if fmt.is_fp8:
        return storage if op.autocast == "lowp" else torch.float32
    return torch.float32 if op.autocast == "fp32" else fmt.torch_dtype


def run_on_device(
    op: OpSpec,
    fmt: Format,
    inputs: tuple[torch.Tensor, ...],
    pass_: Pass,
    grad_outputs: tuple[torch.Tensor, ...] | None,
    device: torch.device | str,
) -> tuple[torch.Tensor, ...]:
    """The op's outputs (forward) or input gradients (backward), back on the CPU in the contract's dtypes."""
    backward = pass_ == "backward"
    leaves, computed = [], []
    for index, (arg, tensor) in enumerate(zip(op.args, inputs, strict=True)):
        leaf = tensor.to(device)
        if backward and index in op.differentiable_args:
            leaf = leaf.float() if leaf.dtype.itemsize == 1 else leaf  # fp8 leaves hold exact fp32 values
            leaf.requires_grad_(True)
        leaves.append(leaf)
        computed.append(leaf.to(compute_dtype(op, fmt, arg.role, tensor.dtype)) if leaf.is_floating_point() else leaf)
    fp8_gemm = fmt.is_fp8 and op.autocast == "lowp"
    if fp8_gemm and backward:  # the backward reference starts from bf16 gradients: compute from exact values in fp32
        computed = [t.float() if t.is_floating_point() else t for t in computed]
    mode = Fp8GemmMode() if fp8_gemm and not backward else contextlib.nullcontext()
    with torch.enable_grad() if backward else torch.no_grad(), mode:
        outputs = op.reference(*computed, **op.attrs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    if not backward:
        formats = op.output_formats(fmt)
        if len(formats) != len(outputs):
            raise OpError(f"op {op.name!r} declares {len(formats)} outputs, its reference returned {len(outputs)}")
        pairs = zip(outputs, formats, strict=True)
        return tuple((o.to(f.torch_dtype) if o.is_floating_point() else o).cpu() for o, f in pairs)
    assert grad_outputs is not None  # Backend.run checked: one per output
    return _gradients(op, fmt, leaves, outputs, grad_outputs, device)


def _gradients(
    op: OpSpec,
    fmt: Format,
    leaves: list[torch.Tensor],
    outputs: tuple[torch.Tensor, ...],
    grad_outputs: tuple[torch.Tensor, ...],
    device: torch.device | str,
) -> tuple[torch.Tensor, ...]:
    """The gradients of the differentiable args, zeros where the output does not depend on one."""
    pairs = [(o, g.to(device, o.dtype)) for o, g in zip(outputs, grad_outputs, strict=True) if o.requires_grad]
    wanted = [leaves[i] for i in op.differentiable_args]
    grads = torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
    result = []
    for index, grad in zip(op.differentiable_args, grads, strict=True):
        storage = op.args[index].storage_dtype(fmt)
        grad = torch.zeros_like(leaves[index]) if grad is None else grad
        result.append(grad.to(storage).cpu())
    return tuple(result)
