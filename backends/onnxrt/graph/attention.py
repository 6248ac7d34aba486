"""scaled_dot_product_attention as an ONNX graph, forward and backward.

The score and value GEMMs run in the case's format; softmax and the gradients compute in fp32.
"""

from __future__ import annotations

import math

import numpy as np

from ..builder import FLOAT
from .base import GraphContext, OpGraph, by_arg, down, f32, reduce_all, swap_last, up


def _attention_scale(ctx: GraphContext) -> float:
    scale = ctx.attr("scale")
    return float(scale) if scale is not None else 1.0 / math.sqrt(ctx.shapes["q"][-1])


def _attention_probs(ctx: GraphContext) -> str:
    """softmax(q k^T * scale [+ causal mask]) in fp32, from the low-format score GEMM."""
    rank = len(ctx.shapes["q"])
    scores = up(ctx, ctx.node("MatMul", ctx["q"], swap_last(ctx, ctx["k"], rank)))
    scores = ctx.node("Mul", scores, f32(ctx, _attention_scale(ctx)))
    if ctx.attr("is_causal", False):
        length_q, length_k = ctx.shapes["q"][-2], ctx.shapes["k"][-2]
        mask = np.triu(np.full((length_q, length_k), -np.inf, dtype=np.float32), k=1 + length_k - length_q)
        scores = ctx.node("Add", scores, ctx.const(mask, FLOAT))
    return ctx.node("Softmax", scores, axis=-1)


def _attention(ctx: GraphContext) -> list[str]:
    probs = down(ctx, _attention_probs(ctx))
    return [ctx.node("MatMul", probs, ctx["v"])]


def _attention_backward(ctx: GraphContext) -> list[str]:
    """The score GEMM runs in the format as in the forward pass; the gradient GEMMs take their fp32
    intermediates (probabilities, score gradients) as they are, accumulating in fp32."""
    rank = len(ctx.shapes["q"])
    probs = _attention_probs(ctx)
    q, k, v, g = (up(ctx, value) for value in (ctx["q"], ctx["k"], ctx["v"], ctx.grad_outputs[0]))
    grad_v = ctx.node("MatMul", swap_last(ctx, probs, rank), g)
    grad_p = ctx.node("MatMul", g, swap_last(ctx, v, rank))
    dot = reduce_all(ctx, "ReduceSum", ctx.node("Mul", grad_p, probs), [-1], keepdims=1)
    grad_s = ctx.node("Mul", ctx.node("Mul", probs, ctx.node("Sub", grad_p, dot)), f32(ctx, _attention_scale(ctx)))
    grad_q = ctx.node("MatMul", grad_s, k)
    grad_k = ctx.node("MatMul", swap_last(ctx, grad_s, rank), q)
    return by_arg(ctx, {"q": down(ctx, grad_q), "k": down(ctx, grad_k), "v": down(ctx, grad_v)})


GRAPHS: dict[str, OpGraph] = {
    "scaled_dot_product_attention": OpGraph(_attention, _attention_backward),
}
