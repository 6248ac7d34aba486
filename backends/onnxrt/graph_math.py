"""Helpers the op graphs share: fp32 opmath casts, broadcast-undoing sums, transposes, constants."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .builder import FLOAT
from .graphs import ONNX_OF_TORCH, GraphContext

SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def up(ctx: GraphContext, x: str, from_type: int | None = None) -> str:
    """x in fp32 (opmath): composite formulas compute in fp32 and round once at the end, as torch kernels do."""
    return x if (ctx.t if from_type is None else from_type) == FLOAT else ctx.cast(x, FLOAT)


def down(ctx: GraphContext, x: str, to_type: int | None = None) -> str:
    """An fp32 result rounded once to the case's format (or `to_type`)."""
    target = ctx.t if to_type is None else to_type
    return x if target == FLOAT else ctx.cast(x, target)


def f32(ctx: GraphContext, value: float) -> str:
    return ctx.const(value, FLOAT)


def unbroadcast(ctx: GraphContext, grad: str, grad_shape: Sequence[int], shape: Sequence[int]) -> str:
    """Sum `grad` (of the broadcast shape) down to `shape`: the gradient of a broadcasting op's input."""
    grad_shape, shape = tuple(grad_shape), tuple(shape)
    if grad_shape == shape:
        return grad
    lead = len(grad_shape) - len(shape)
    axes = list(range(lead)) + [lead + i for i, n in enumerate(shape) if n == 1 and grad_shape[lead + i] != 1]
    summed = ctx.node("ReduceSum", grad, ctx.ints(axes), keepdims=1) if axes else grad
    return ctx.node("Reshape", summed, ctx.ints(shape))


def swap_last(ctx: GraphContext, x: str, rank: int) -> str:
    """x with its last two axes swapped."""
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    return ctx.node("Transpose", x, perm=perm)


def reduce_all(ctx: GraphContext, op_type: str, x: str, axes: Sequence[int], keepdims: int = 0) -> str:
    return ctx.node(op_type, x, ctx.ints(list(axes)), keepdims=keepdims)


def is_nonfinite(ctx: GraphContext, x: str) -> str:
    """Boolean mask of inf/NaN elements: IsInf | IsNaN natively, or (x - x) != 0 as the decomposition."""
    ctx.decomposable = True
    if ctx.decompose:
        ctx.decompositions.append("IsInf/IsNaN as (x - x) != 0 in fp32 (NaN exactly for inf and NaN)")
        x32 = up(ctx, x)
        difference = ctx.node("Sub", x32, x32)
        return ctx.node("Not", ctx.node("Equal", difference, f32(ctx, 0.0)))
    return ctx.node("Or", ctx.node("IsInf", x), ctx.node("IsNaN", x))


def by_arg(ctx: GraphContext, results: dict[str, str]) -> list[str]:
    """The gradients of the op's differentiable args, in order."""
    return [results[ctx.op.args[i].name] for i in ctx.op.differentiable_args]


def storage_type(ctx: GraphContext, arg: str) -> int:
    """The onnx element type argument `arg` is stored in for this case."""
    return ONNX_OF_TORCH[next(a for a in ctx.op.args if a.name == arg).storage_dtype(ctx.fmt)]


def eps(ctx: GraphContext) -> float:
    """The op's epsilon (norms), torch's default when the op does not set one."""
    return float(ctx.attr("eps", 1e-5))

