"""Reductions as ONNX graphs, forward and backward: reduce_sum, reduce_mean, reduce_max (NaN-propagating)."""

from __future__ import annotations

import math

from ..builder import FLOAT
from .base import Builder, GraphContext, OpGraph, down, f32, reduce_all, up

NAN_MAX = "ORT's ReduceMax drops NaN; NaN propagated by Where(ReduceMax(Cast(IsNaN(x))) > 0, NaN, ReduceMax(x))"


def _reduce_axes(ctx: GraphContext) -> list[int]:
    dim = ctx.attr("dim", ctx.attr("axis", -1))  # the ops reduce the last axis unless told otherwise
    if dim is None:
        return list(range(len(ctx.shapes["x"])))
    return [int(d) for d in dim] if isinstance(dim, (list, tuple)) else [int(dim)]


def _keepdims(ctx: GraphContext) -> int:
    return int(bool(ctx.attr("keepdim", False)))


def _reduce(op_type: str) -> Builder:
    def forward(ctx: GraphContext) -> list[str]:
        return [reduce_all(ctx, op_type, ctx["x"], _reduce_axes(ctx), _keepdims(ctx))]

    return forward


def _expand_grad(ctx: GraphContext, g: str) -> str:
    """The gradient of a reduction's output broadcast back over the reduced axes."""
    keep_shape = [1 if i in _normalized_axes(ctx) else n for i, n in enumerate(ctx.shapes["x"])]
    return ctx.node("Expand", ctx.node("Reshape", g, ctx.ints(keep_shape)), ctx.ints(ctx.shapes["x"]))


def _normalized_axes(ctx: GraphContext) -> set[int]:
    rank = len(ctx.shapes["x"])
    return {a % rank for a in _reduce_axes(ctx)} if rank else set()


def _reduce_sum_backward(ctx: GraphContext) -> list[str]:
    return [_expand_grad(ctx, ctx.grad_outputs[0])]


def _reduce_mean_backward(ctx: GraphContext) -> list[str]:
    count = math.prod(ctx.shapes["x"][a] for a in _normalized_axes(ctx))
    g = ctx.node("Div", up(ctx, ctx.grad_outputs[0]), f32(ctx, float(count)))
    return [down(ctx, _expand_grad(ctx, g))]


def _nan_max(ctx: GraphContext, x: str, axes: list[int], keepdims: int, elem_type: int | None = None) -> str:
    """ReduceMax that propagates NaN as torch.amax does (the CPU EP's ReduceMax skips NaN)."""
    if NAN_MAX not in ctx.decompositions:
        ctx.decompositions.append(NAN_MAX)
    peak = reduce_all(ctx, "ReduceMax", x, axes, keepdims)
    nan_seen = reduce_all(ctx, "ReduceMax", ctx.node("Cast", ctx.node("IsNaN", x), to=FLOAT), axes, keepdims)
    has_nan = ctx.node("Greater", nan_seen, f32(ctx, 0.0))
    return ctx.node("Where", has_nan, ctx.const(float("nan"), elem_type), peak)


def _reduce_max(ctx: GraphContext) -> list[str]:
    return [_nan_max(ctx, ctx["x"], _reduce_axes(ctx), _keepdims(ctx))]


def _reduce_max_backward(ctx: GraphContext) -> list[str]:
    """torch.amax's gradient: split evenly between the elements equal to the maximum (NaN where it is NaN)."""
    axes = _reduce_axes(ctx)
    x = up(ctx, ctx["x"])
    peak = _nan_max(ctx, x, axes, keepdims=1, elem_type=FLOAT)
    hits = ctx.node("Cast", ctx.node("Equal", x, peak), to=FLOAT)
    count = reduce_all(ctx, "ReduceSum", hits, axes, keepdims=1)
    g = _expand_grad(ctx, up(ctx, ctx.grad_outputs[0]))
    return [down(ctx, ctx.node("Div", ctx.node("Mul", g, hits), count))]


GRAPHS: dict[str, OpGraph] = {
    "reduce_sum": OpGraph(_reduce("ReduceSum"), _reduce_sum_backward),
    "reduce_mean": OpGraph(_reduce("ReduceMean"), _reduce_mean_backward),
    "reduce_max": OpGraph(_reduce_max, _reduce_max_backward),
}
