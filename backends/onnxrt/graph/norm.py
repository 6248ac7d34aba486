"""Normalizations as ONNX graphs, forward and backward: layer_norm, rms_norm, batch_norm (inference).

Statistics and gradients compute in fp32 between the inputs and one final rounding, as torch's kernels do.
"""

from __future__ import annotations

from .base import GraphContext, OpGraph, by_arg, down, eps, f32, reduce_all, storage_type, up


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


def _layer_norm_backward(ctx: GraphContext) -> list[str]:
    return _norm_backward(ctx, center=True)


def _rms_norm(ctx: GraphContext) -> list[str]:
    x_hat, _, _ = _normalized(ctx, center=False)
    return [down(ctx, ctx.node("Mul", x_hat, up(ctx, ctx["weight"])))]


def _rms_norm_backward(ctx: GraphContext) -> list[str]:
    return _norm_backward(ctx, center=False)


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


GRAPHS: dict[str, OpGraph] = {
    "layer_norm": OpGraph(_layer_norm, _layer_norm_backward),
    "rms_norm": OpGraph(_rms_norm, _rms_norm_backward),
    "batch_norm": OpGraph(_batch_norm, _batch_norm_backward),
}
