"""Runs a registry op with torch on a device, in the case's format, the way torch.autocast would.

Device-agnostic on purpose: the cuda backend runs it on a GPU, the tests run the same code on the CPU.
Inputs of ops that autocast keeps in fp32 are upcast first; fp8 GEMMs go through torch._scaled_mm.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

from mpx.errors import OpError
from mpx.formats import FP8_E5M2, Format
from mpx.fp8.gemm import fp8_gemm
from mpx.ops.spec import OpSpec, Pass

# ops whose reference is a plain matmul / linear: the ones torch._scaled_mm can run in fp8
FP8_GEMM_OPS = frozenset({"matmul", "linear", "mm", "bmm", "addmm"})


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
    if len(inputs) != op.arity:
        raise OpError(f"op {op.name!r} takes {op.arity} inputs, got {len(inputs)}")
    backward = pass_ == "backward"
    if backward and grad_outputs is None:
        raise OpError(f"backward of {op.name!r} needs grad_outputs, one per output")
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
    return _gradients(op, fmt, leaves, outputs, grad_outputs, device)


def _gradients(op, fmt, leaves, outputs, grad_outputs, device) -> tuple[torch.Tensor, ...]:
    if len(grad_outputs) != len(outputs):
        raise OpError(f"backward of {op.name!r} needs {len(outputs)} grad_outputs, got {len(grad_outputs)}")
    pairs = [(o, g.to(device, o.dtype)) for o, g in zip(outputs, grad_outputs, strict=True) if o.requires_grad]
    wanted = [leaves[i] for i in op.differentiable_args]
    grads = torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
    result = []
    for index, grad in zip(op.differentiable_args, grads, strict=True):
        storage = op.args[index].storage_dtype(fmt)
        grad = torch.zeros_like(leaves[index]) if grad is None else grad
        result.append(grad.to(storage).cpu())
    return tuple(result)


class Fp8GemmMode(TorchFunctionMode):
    """Routes matmul-family calls on fp8 tensors to torch._scaled_mm (unit scales, fp32 output)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if not any(t.dtype.itemsize == 1 and t.is_floating_point() for t in tensors):
            return func(*args, **kwargs)
        if func in (torch.nn.functional.linear,):
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            out = fp8_matmul(x, weight.t())
            return out if bias is None else out + bias.float()
        if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm,
                    torch.bmm, torch.Tensor.bmm):
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
