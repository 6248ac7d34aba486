"""GEMM-like ops as ONNX graphs: matmul, linear, conv2d, attention, embedding; gradients as GEMMs.

The op's own kernel runs in the case's format (MatMul, Conv, Add, Softmax, ...), so the EP's real support
for that format shows; multi-node formulas (activations, norms, losses, gradients) compute in fp32 between
their inputs and one final rounding, as torch's kernels do (opmath).
"""

from __future__ import annotations

import math

from .builder import FLOAT
from .graph_math import (
    by_arg,
    down,
    f32,
    reduce_all,
    swap_last,
    up,
)
from .graphs import GRAPHS, GraphContext, OpGraph


def _matmul(ctx: GraphContext) -> list[str]:
    return [ctx.node("MatMul", ctx["a"], ctx["b"])]


def _matmul_backward(ctx: GraphContext) -> list[str]:
    g = ctx.grad_outputs[0]
    rank_a, rank_b = len(ctx.shapes["a"]), len(ctx.shapes["b"])
    grad_a = ctx.node("MatMul", g, swap_last(ctx, ctx["b"], rank_b))
    grad_b = ctx.node("MatMul", swap_last(ctx, ctx["a"], rank_a), g)
    return [grad_a, grad_b]


def _linear(ctx: GraphContext) -> list[str]:
    w_t = ctx.node("Transpose", ctx["weight"], perm=[1, 0])
    y = ctx.node("MatMul", ctx["x"], w_t)
    return [ctx.node("Add", y, ctx["bias"]) if "bias" in ctx.values else y]


def _linear_backward(ctx: GraphContext) -> list[str]:
    g, x_shape = ctx.grad_outputs[0], ctx.shapes["x"]
    out_features, in_features = ctx.shapes["weight"]
    grad_x = ctx.node("MatMul", g, ctx["weight"])
    g2 = ctx.node("Reshape", g, ctx.ints([-1, out_features]))
    x2 = ctx.node("Reshape", ctx["x"], ctx.ints([-1, in_features]))
    grad_w = ctx.node("MatMul", ctx.node("Transpose", g2, perm=[1, 0]), x2)
    results = {"x": grad_x, "weight": grad_w}
    if "bias" in ctx.values:
        results["bias"] = down(ctx, reduce_all(ctx, "ReduceSum", up(ctx, g2), [0]))
    del x_shape
    return by_arg(ctx, results)


def _conv_attrs(ctx: GraphContext) -> dict:
    stride, padding = ctx.attr("stride", 1), ctx.attr("padding", 1)  # the op's reference: padding=1
    stride = [stride, stride] if isinstance(stride, int) else list(stride)
    padding = [padding, padding] if isinstance(padding, int) else list(padding)
    return {"strides": stride, "pads": padding + padding}


def _conv2d(ctx: GraphContext) -> list[str]:
    inputs = [ctx["x"], ctx["weight"]] + ([ctx["bias"]] if "bias" in ctx.values else [])
    return [ctx.node("Conv", *inputs, **_conv_attrs(ctx))]


def _conv2d_backward(ctx: GraphContext) -> list[str]:
    g = ctx.grad_outputs[0]
    attrs = _conv_attrs(ctx)
    n, c, h, w = ctx.shapes["x"]
    o, _, kh, kw = ctx.shapes["weight"]
    _, _, oh, ow = ctx.grad_shapes[0]
    (sh, sw), (ph, pw) = attrs["strides"], attrs["pads"][:2]
    extra = [h + 2 * ph - kh - (oh - 1) * sh, w + 2 * pw - kw - (ow - 1) * sw]
    grad_x = ctx.node("ConvTranspose", g, ctx["weight"], strides=[sh, sw], pads=attrs["pads"], output_padding=extra)
    # grad_w[o, c, i, j] = sum_{n, y, x} g[n, o, y, x] * x_padded[n, c, y*s + i, x*s + j]: a Conv of the
    # channel-major x with the channel-major g as kernel, dilated by the stride.
    x_t = ctx.node("Transpose", ctx["x"], perm=[1, 0, 2, 3])
    g_t = ctx.node("Transpose", g, perm=[1, 0, 2, 3])
    full = ctx.node("Conv", x_t, g_t, pads=attrs["pads"], dilations=[sh, sw])
    cropped = ctx.node("Slice", full, ctx.ints([0, 0]), ctx.ints([kh, kw]), ctx.ints([2, 3]))
    grad_w = ctx.node("Transpose", cropped, perm=[1, 0, 2, 3])
    results = {"x": grad_x, "weight": grad_w}
    if "bias" in ctx.values:
        results["bias"] = down(ctx, reduce_all(ctx, "ReduceSum", up(ctx, g), [0, 2, 3]))
    del n, c, o
    return by_arg(ctx, results)


def _embedding(ctx: GraphContext) -> list[str]:
    return [ctx.node("Gather", ctx["weight"], ctx["index"], axis=0)]


def _embedding_backward(ctx: GraphContext) -> list[str]:
    vocabulary, dim = ctx.shapes["weight"]
    flat = ctx.node("Reshape", ctx["index"], ctx.ints([-1]))
    one_hot = ctx.node("OneHot", flat, ctx.ints([vocabulary]), ctx.const([0.0, 1.0], FLOAT), axis=-1)
    g = ctx.node("Reshape", up(ctx, ctx.grad_outputs[0]), ctx.ints([-1, dim]))
    return [down(ctx, ctx.node("MatMul", ctx.node("Transpose", one_hot, perm=[1, 0]), g))]


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
        import numpy as np

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



GRAPHS["matmul"] = OpGraph(_matmul, _matmul_backward)
GRAPHS["linear"] = OpGraph(_linear, _linear_backward)
GRAPHS["conv2d"] = OpGraph(_conv2d, _conv2d_backward)
GRAPHS["embedding"] = OpGraph(_embedding, _embedding_backward)
GRAPHS["scaled_dot_product_attention"] = OpGraph(_attention, _attention_backward)
