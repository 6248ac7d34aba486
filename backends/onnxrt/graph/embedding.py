"""embedding as an ONNX graph: a Gather forward; the backward is a one-hot GEMM in fp32."""

from __future__ import annotations

from ..builder import FLOAT
from .base import GraphContext, OpGraph, down, up


def _embedding(ctx: GraphContext) -> list[str]:
    return [ctx.node("Gather", ctx["weight"], ctx["index"], axis=0)]


def _embedding_backward(ctx: GraphContext) -> list[str]:
    vocabulary, dim = ctx.shapes["weight"]
    flat = ctx.node("Reshape", ctx["index"], ctx.ints([-1]))
    one_hot = ctx.node("OneHot", flat, ctx.ints([vocabulary]), ctx.const([0.0, 1.0], FLOAT), axis=-1)
    g = ctx.node("Reshape", up(ctx, ctx.grad_outputs[0]), ctx.ints([-1, dim]))
    return [down(ctx, ctx.node("MatMul", ctx.node("Transpose", one_hot, perm=[1, 0]), g))]


GRAPHS: dict[str, OpGraph] = {
    "embedding": OpGraph(_embedding, _embedding_backward),
}
