"""GEMM-like ops as ONNX graphs, forward and backward: matmul, linear, conv2d; their gradients are GEMMs too.

The GEMM runs in the case's format (MatMul, Conv), so the EP's real support for that format shows.
"""

from __future__ import annotations

from .base import GraphContext, OpGraph, by_arg, down, reduce_all, swap_last, up


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
    g = ctx.grad_outputs[0]
    out_features, in_features = ctx.shapes["weight"]
    grad_x = ctx.node("MatMul", g, ctx["weight"])
    g2 = ctx.node("Reshape", g, ctx.ints([-1, out_features]))
    x2 = ctx.node("Reshape", ctx["x"], ctx.ints([-1, in_features]))
    grad_w = ctx.node("MatMul", ctx.node("Transpose", g2, perm=[1, 0]), x2)
    results = {"x": grad_x, "weight": grad_w}
    if "bias" in ctx.values:
        results["bias"] = down(ctx, reduce_all(ctx, "ReduceSum", up(ctx, g2), [0]))
    return by_arg(ctx, results)


def _conv_attrs(ctx: GraphContext) -> dict[str, list[int]]:
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
    _, _, h, w = ctx.shapes["x"]
    _, _, kh, kw = ctx.shapes["weight"]
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
    return by_arg(ctx, results)


GRAPHS: dict[str, OpGraph] = {
    "matmul": OpGraph(_matmul, _matmul_backward),
    "linear": OpGraph(_linear, _linear_backward),
    "conv2d": OpGraph(_conv2d, _conv2d_backward),
}
