"""Softmax, normalizations and losses as ONNX graphs, forward and backward.

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
    eps,
    f32,
    reduce_all,
    storage_type,
    up,
)
from .graphs import GRAPHS, GraphContext, OpGraph


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


def _norm_axes(ctx: GraphContext) -> list[int]:
    rank, normalized = len(ctx.shapes["x"]), len(ctx.shapes["weight"]) if "weight" in ctx.shapes else 1
    return list(range(rank - normalized, rank))


def _layer_norm(ctx: GraphContext) -> list[str]:
    inputs = [ctx["x"], ctx["weight"]] + ([ctx["bias"]] if "bias" in ctx.values else [])
    return [ctx.node("LayerNormalization", *inputs, axis=_norm_axes(ctx)[0], epsilon=eps(ctx), stash_type=1)]


def _normalized(ctx: GraphContext, center: bool) -> tuple[str, str, str]:
    """(x_hat, 1/std, x - mean) in fp32 over the normalized axes (center=False: the rms form)."""
    axes = _norm_axes(ctx)
    x = up(ctx, ctx["x"])
    centered = ctx.node("Sub", x, reduce_all(ctx, "ReduceMean", x, axes, keepdims=1)) if center else x
    variance = reduce_all(ctx, "ReduceMean", ctx.node("Mul", centered, centered), axes, keepdims=1)
    inv_std = ctx.node("Reciprocal", ctx.node("Sqrt", ctx.node("Add", variance, f32(ctx, eps(ctx)))))
    return ctx.node("Mul", centered, inv_std), inv_std, centered


def _norm_backward(ctx: GraphContext, center: bool) -> list[str]:
    axes = _norm_axes(ctx)
    x_hat, inv_std, _ = _normalized(ctx, center)
    g = up(ctx, ctx.grad_outputs[0])
    w = up(ctx, ctx["weight"])
    g_hat = ctx.node("Mul", g, w)
    mean_g_xhat = reduce_all(ctx, "ReduceMean", ctx.node("Mul", g_hat, x_hat), axes, keepdims=1)
    inner = ctx.node("Sub", g_hat, ctx.node("Mul", x_hat, mean_g_xhat))
    if center:
        inner = ctx.node("Sub", inner, reduce_all(ctx, "ReduceMean", g_hat, axes, keepdims=1))
    grad_x = down(ctx, ctx.node("Mul", inner, inv_std))
    batch_axes = list(range(len(ctx.shapes["x"]) - len(axes)))
    grad_w = down(ctx, reduce_all(ctx, "ReduceSum", ctx.node("Mul", g, x_hat), batch_axes), storage_type(ctx, "weight"))
    results = {"x": grad_x, "weight": grad_w}
    if "bias" in ctx.values:
        results["bias"] = down(ctx, reduce_all(ctx, "ReduceSum", g, batch_axes), storage_type(ctx, "bias"))
    return by_arg(ctx, results)


def _rms_norm(ctx: GraphContext) -> list[str]:
    x_hat, _, _ = _normalized(ctx, center=False)
    return [down(ctx, ctx.node("Mul", x_hat, up(ctx, ctx["weight"])))]


def _batch_statistics(ctx: GraphContext) -> tuple[str, str, str]:
    """(scale, shift, inv_std) per channel in fp32, shaped to broadcast over x: y = x * scale + shift."""
    shape = [1, -1] + [1] * (len(ctx.shapes["x"]) - 2)

    def channel(name: str) -> str:
        return ctx.node("Reshape", up(ctx, ctx[name], storage_type(ctx, name)), ctx.ints(shape))

    mean, var, weight, bias = (channel(n) for n in ("running_mean", "running_var", "weight", "bias"))
    inv_std = ctx.node("Reciprocal", ctx.node("Sqrt", ctx.node("Add", var, f32(ctx, eps(ctx)))))
    scale = ctx.node("Mul", weight, inv_std)
    return scale, ctx.node("Sub", bias, ctx.node("Mul", mean, scale)), inv_std


def _batch_norm(ctx: GraphContext) -> list[str]:
    """Inference batch norm with running statistics, computed in fp32 as torch's kernels do."""
    scale, shift, _ = _batch_statistics(ctx)
    return [down(ctx, ctx.node("Add", ctx.node("Mul", up(ctx, ctx["x"]), scale), shift))]


def _batch_norm_backward(ctx: GraphContext) -> list[str]:
    rank = len(ctx.shapes["x"])
    shape, axes = [1, -1] + [1] * (rank - 2), [0] + list(range(2, rank))
    g, x = up(ctx, ctx.grad_outputs[0]), up(ctx, ctx["x"])
    _, _, inv_std = _batch_statistics(ctx)
    mean, w = (
        ctx.node("Reshape", up(ctx, ctx[n], storage_type(ctx, n)), ctx.ints(shape)) for n in ("running_mean", "weight")
    )
    x_hat = ctx.node("Mul", ctx.node("Sub", x, mean), inv_std)
    results = {
        "x": down(ctx, ctx.node("Mul", g, ctx.node("Mul", w, inv_std))),
        "weight": down(ctx, reduce_all(ctx, "ReduceSum", ctx.node("Mul", g, x_hat), axes), storage_type(ctx, "weight")),
        "bias": down(ctx, reduce_all(ctx, "ReduceSum", g, axes), storage_type(ctx, "bias")),
    }
    return by_arg(ctx, results)


def _mse_loss(ctx: GraphContext) -> list[str]:
    difference = ctx.node("Sub", up(ctx, ctx["pred"]), up(ctx, ctx["target"]))
    return [reduce_all(ctx, "ReduceMean", ctx.node("Mul", difference, difference), range(len(ctx.shapes["pred"])))]


def _mse_loss_backward(ctx: GraphContext) -> list[str]:
    count = float(math.prod(ctx.shapes["pred"]))
    difference = ctx.node("Sub", up(ctx, ctx["pred"]), up(ctx, ctx["target"]))
    grad = ctx.node("Mul", difference, ctx.node("Mul", up(ctx, ctx.grad_outputs[0], FLOAT), f32(ctx, 2.0 / count)))
    results = {"pred": down(ctx, grad), "target": down(ctx, ctx.node("Neg", grad))}
    return by_arg(ctx, results)


def _cross_entropy(ctx: GraphContext) -> list[str]:
    log_probs = ctx.node("LogSoftmax", up(ctx, ctx["logits"]), axis=-1)
    picked = ctx.node("GatherElements", log_probs, ctx.node("Unsqueeze", ctx["target"], ctx.ints([-1])), axis=-1)
    return [ctx.node("Neg", reduce_all(ctx, "ReduceMean", picked, [0, 1]))]


def _cross_entropy_backward(ctx: GraphContext) -> list[str]:
    batch, classes = ctx.shapes["logits"]
    probs = ctx.node("Softmax", up(ctx, ctx["logits"]), axis=-1)
    one_hot = ctx.node("OneHot", ctx["target"], ctx.ints([classes]), ctx.const([0.0, 1.0], FLOAT), axis=-1)
    scale = ctx.node("Div", up(ctx, ctx.grad_outputs[0], FLOAT), f32(ctx, float(batch)))
    return [down(ctx, ctx.node("Mul", ctx.node("Sub", probs, one_hot), scale))]



GRAPHS["softmax"] = OpGraph(_softmax, _softmax_backward)
GRAPHS["log_softmax"] = OpGraph(_log_softmax, _log_softmax_backward)
GRAPHS["layer_norm"] = OpGraph(_layer_norm, lambda ctx: _norm_backward(ctx, center=True))
GRAPHS["rms_norm"] = OpGraph(_rms_norm, lambda ctx: _norm_backward(ctx, center=False))
GRAPHS["batch_norm"] = OpGraph(_batch_norm, _batch_norm_backward)
GRAPHS["mse_loss"] = OpGraph(_mse_loss, _mse_loss_backward)
GRAPHS["cross_entropy"] = OpGraph(_cross_entropy, _cross_entropy_backward)
