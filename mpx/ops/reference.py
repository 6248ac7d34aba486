"""The right answer of a case: its inputs, and the float64 reference rounded once to each result's format.

Reference = float64 math on the inputs as stored in the case's format, then ONE rounding to each output's
format (Format.round is a single rounding from float64). Backends use these helpers too: the formats of
args and results, the vector-Jacobian product and the flushing of subnormals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import OpError
from ..formats import FP32, Format, Overflow, Subnormals
from .spec import Arg, InputClass, OpSpec, Pass


@dataclass(frozen=True)
class Prepared:
    """The inputs of one case: float64 values (representable in their formats) and the stored tensors."""

    inputs: tuple[torch.Tensor, ...]
    storage_inputs: tuple[torch.Tensor, ...]
    grad_outputs: tuple[torch.Tensor, ...] | None = None
    storage_grad_outputs: tuple[torch.Tensor, ...] | None = None


def arg_format(arg: Arg, fmt: Format) -> Format:
    """The format an argument (and its gradient) is stored in."""
    return FP32 if arg.role == "fp32" else fmt


def result_formats(op: OpSpec, fmt: Format, pass_: Pass) -> tuple[Format, ...]:
    """The format of each result: the outputs' formats (forward) or the differentiable args' formats (backward)."""
    if pass_ == "forward":
        return op.output_formats(fmt)
    return tuple(arg_format(op.args[i], fmt) for i in op.differentiable_args)


def prepare(op: OpSpec, fmt: Format, input_class: InputClass, pass_: Pass, seed: int = 0) -> Prepared:
    """Generate the inputs of a case (and, for backward, gradients of the outputs) deterministically from `seed`."""
    _check_case(op, fmt, input_class, pass_)
    generator = torch.Generator().manual_seed(seed)
    inputs = tuple(op.make_inputs(fmt, input_class, generator))
    storage = op.to_storage(fmt, inputs)
    if pass_ == "forward":
        return Prepared(inputs, storage)
    with torch.no_grad():
        outputs = op.reference(*inputs, **op.attrs)
    formats = op.output_formats(fmt)
    grads = tuple(
        f.round(torch.randn(out.shape, generator=generator, dtype=torch.float64))
        for out, f in zip(outputs, formats, strict=False)
    )
    storage_grads = tuple(g.to(f.torch_dtype) for g, f in zip(grads, formats, strict=False))
    return Prepared(inputs, storage, grads, storage_grads)


def expected(
    op: OpSpec,
    fmt: Format,
    prepared: Prepared,
    pass_: Pass,
    overflow: Overflow = "inf",
    subnormals: Subnormals = "keep",
) -> tuple[torch.Tensor, ...]:
    """The float64 reference, rounded once to each result's format with the given overflow/subnormal semantics.

    subnormals="flush" also treats subnormal inputs as zero (DAZ), as flushing hardware does.
    """
    inputs = flush_inputs(op, fmt, prepared.inputs, subnormals)
    formats = result_formats(op, fmt, pass_)
    if pass_ == "forward":
        with torch.no_grad():
            results = op.reference(*inputs, **op.attrs)
    else:
        if prepared.grad_outputs is None:
            raise OpError(f"{op.name} backward needs a Prepared made with pass_='backward'")
        grad_outputs = tuple(
            flush(g, f, subnormals) for g, f in zip(prepared.grad_outputs, op.output_formats(fmt), strict=False)
        )
        results = reference_backward(op, inputs, grad_outputs)
    return tuple(
        f.round(r.to(torch.float64), overflow=overflow, subnormals=subnormals)
        for r, f in zip(results, formats, strict=False)
    )


def reference_backward(
    op: OpSpec, inputs: tuple[torch.Tensor, ...], grad_outputs: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    """Gradients of the differentiable args: autograd through `op.reference` (in the inputs' dtype)."""
    return vjp(op.reference, op.differentiable_args, inputs, grad_outputs, op.attrs)


def vjp(
    function: Callable[..., tuple[torch.Tensor, ...]],
    differentiable: tuple[int, ...],
    inputs: tuple[torch.Tensor, ...],
    grad_outputs: tuple[torch.Tensor, ...],
    attrs: Mapping[str, Any],
) -> tuple[torch.Tensor, ...]:
    """Vector-Jacobian product of `function(*inputs, **attrs)` for the args at `differentiable`."""
    leaves = [
        t.detach().clone().requires_grad_(i in differentiable) if t.is_floating_point() else t
        for i, t in enumerate(inputs)
    ]
    with torch.enable_grad():
        outputs = function(*leaves, **attrs)
        pairs = [(o, g.to(o.dtype)) for o, g in zip(outputs, grad_outputs, strict=False) if o.requires_grad]
        wanted = [leaves[i] for i in differentiable]
        grads = (
            torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
            if pairs
            else [None] * len(wanted)
        )
    return tuple(torch.zeros_like(w) if g is None else g.detach() for g, w in zip(grads, wanted, strict=False))


def flush_inputs(
    op: OpSpec, fmt: Format, inputs: tuple[torch.Tensor, ...], subnormals: Subnormals
) -> tuple[torch.Tensor, ...]:
    """Inputs with subnormals of their own format read as zero when flushing (float/int/bool args pass through)."""
    return tuple(
        flush(t, arg_format(a, fmt), subnormals) if t.is_floating_point() else t
        for a, t in zip(op.args, inputs, strict=False)
    )


def flush(t: torch.Tensor, fmt: Format, subnormals: Subnormals) -> torch.Tensor:
    """t with values below fmt's smallest normal read as (signed) zero when flushing."""
    if subnormals == "keep":
        return t
    return t * (t.abs() >= fmt.min_normal)


def _check_case(op: OpSpec, fmt: Format, input_class: InputClass, pass_: Pass) -> None:
    """Raise an OpError naming what is wrong when `op` does not define this case."""
    if pass_ not in ("forward", "backward"):
        raise OpError(f"pass must be 'forward' or 'backward', not {pass_!r}")
    if pass_ == "backward" and not op.has_backward:
        raise OpError(f"op {op.name!r} has no backward pass")
    if input_class not in op.input_classes:
        raise OpError(f"op {op.name!r} has no {input_class!r} inputs; its input classes: {', '.join(op.input_classes)}")
    if not op.supports_format(fmt):
        raise OpError(f"op {op.name!r} is not defined in {fmt.name}")
