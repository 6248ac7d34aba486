"""softmax and log_softmax as ONNX graphs: the kernel in the case's format, gradients in fp32."""

from __future__ import annotations

from .base import GraphContext, OpGraph, down, reduce_all, up


def _axis(ctx: GraphContext) -> int:
    return int(ctx.attr("dim", ctx.attr("axis", -1)))


def _softmax(ctx: GraphContext) -> list[str]:
    return [ctx.node("Softmax", ctx["x"], axis=_axis(ctx))]


def _softmax_backward(ctx: GraphContext) -> list[str]:
    y = ctx.node("Softmax", up(ctx, ctx["x"]), axis=_axis(ctx))
    g = up(ctx, ctx.grad_outputs[0])
    dot = reduce_all(ctx, "ReduceSum", ctx.node("Mul", g, y), [_axis(ctx)], keepdims=1)
    return [down(ctx, ctx.node("Mul", y, ctx.node("Sub", g, dot)))]


def _log_softmax(ctx: GraphContext) -> list[str]:
    return [ctx.node("LogSoftmax", ctx["x"], axis=_axis(ctx))]


def _log_softmax_backward(ctx: GraphContext) -> list[str]:
    y = ctx.node("Softmax", up(ctx, ctx["x"]), axis=_axis(ctx))
    g = up(ctx, ctx.grad_outputs[0])
    total = reduce_all(ctx, "ReduceSum", g, [_axis(ctx)], keepdims=1)
    return [down(ctx, ctx.node("Sub", g, ctx.node("Mul", y, total)))]


GRAPHS: dict[str, OpGraph] = {
    "softmax": OpGraph(_softmax, _softmax_backward),
    "log_softmax": OpGraph(_log_softmax, _log_softmax_backward),
}
