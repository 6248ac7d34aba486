"""Precision ops as ONNX graphs: cast, scale, unscale, the non-finite check, masked fp32 master updates
for SGD and AdamW, cast back -- so the loss-scaler / master-weight protocol runs on the EP itself.

The updates follow torch.optim's single-tensor kernels op for op in fp32, and are masked with Where on
found_inf, so a skipped step returns the very same bits it was given.
"""

from __future__ import annotations

import math

from .builder import FLOAT
from .graph_math import down, f32, is_nonfinite, up
from .graphs import GRAPHS, GraphContext, OpGraph


def _cast(ctx: GraphContext) -> list[str]:
    return [ctx.cast(ctx["x"], ctx.t)]


def _cast_backward(ctx: GraphContext) -> list[str]:
    return [up(ctx, ctx.grad_outputs[0])]


def _scale(ctx: GraphContext) -> list[str]:
    """x * scale with one rounding to x's format (fp32 product: exact for power-of-two scales)."""
    return [down(ctx, ctx.node("Mul", up(ctx, ctx["x"]), ctx["scale"]))]


def _unscale(ctx: GraphContext) -> list[str]:
    return [ctx.node("Mul", up(ctx, ctx["grad"]), ctx["inv_scale"])]


def _nonfinite_check(ctx: GraphContext) -> list[str]:
    """found_inf: a 0-dim fp32 1.0 when any element is inf or NaN."""
    flags = ctx.cast(is_nonfinite(ctx, ctx["x"]), FLOAT)
    flat = ctx.node("Reshape", flags, ctx.ints([-1]))
    return [ctx.node("ReduceMax", flat, ctx.ints([0]), keepdims=0)]


def _skip(ctx: GraphContext) -> str:
    return ctx.node("Not", ctx.node("Equal", ctx["found_inf"], f32(ctx, 0.0)))


def _sgd_master_update(ctx: GraphContext) -> list[str]:
    lr, momentum, weight_decay = (float(ctx.attr(k)) for k in ("lr", "momentum", "weight_decay"))
    master, buffer = ctx["master"], ctx["momentum_buffer"]
    direction = ctx.node("Add", up(ctx, ctx["grad"]), ctx.node("Mul", master, f32(ctx, weight_decay)))
    new_buffer = ctx.node("Add", ctx.node("Mul", buffer, f32(ctx, momentum)), direction)
    updated = ctx.node("Sub", master, ctx.node("Mul", new_buffer, f32(ctx, lr)))
    skip = _skip(ctx)
    return [ctx.node("Where", skip, master, updated), ctx.node("Where", skip, buffer, new_buffer)]


def _adam_master_update(ctx: GraphContext) -> list[str]:
    """AdamW as torch.optim.AdamW's single-tensor step computes it, in fp32."""
    lr, beta1, beta2, eps, weight_decay = (float(ctx.attr(k)) for k in ("lr", "beta1", "beta2", "eps", "weight_decay"))
    step = int(ctx.attr("step"))
    master, exp_avg, exp_avg_sq, grad = ctx["master"], ctx["exp_avg"], ctx["exp_avg_sq"], up(ctx, ctx["grad"])
    decayed = ctx.node("Mul", master, f32(ctx, 1 - lr * weight_decay))
    # exp_avg.lerp_(grad, 1 - beta1) == exp_avg + (1 - beta1) * (grad - exp_avg)
    avg = ctx.node("Add", exp_avg, ctx.node("Mul", f32(ctx, 1 - beta1), ctx.node("Sub", grad, exp_avg)))
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    product = ctx.node("Mul", ctx.node("Mul", f32(ctx, 1 - beta2), grad), grad)
    avg_sq = ctx.node("Add", ctx.node("Mul", exp_avg_sq, f32(ctx, beta2)), product)
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    root = ctx.node("Div", ctx.node("Sqrt", avg_sq), f32(ctx, bias_correction2_sqrt))
    denominator = ctx.node("Add", root, f32(ctx, eps))
    # param.addcdiv_(exp_avg, denom, value=-step_size)
    updated = ctx.node("Add", decayed, ctx.node("Mul", f32(ctx, -step_size), ctx.node("Div", avg, denominator)))
    skip = _skip(ctx)
    return [ctx.node("Where", skip, master, updated), ctx.node("Where", skip, exp_avg, avg),
            ctx.node("Where", skip, exp_avg_sq, avg_sq)]


def _cast_back(ctx: GraphContext) -> list[str]:
    return [ctx.cast(ctx["master"], ctx.t)]


GRAPHS["cast"] = OpGraph(_cast, _cast_backward)
GRAPHS["scale"] = OpGraph(_scale)
GRAPHS["unscale"] = OpGraph(_unscale)
GRAPHS["nonfinite_check"] = OpGraph(_nonfinite_check)
GRAPHS["sgd_master_update"] = OpGraph(_sgd_master_update)
GRAPHS["adam_master_update"] = OpGraph(_adam_master_update)
GRAPHS["cast_back"] = OpGraph(_cast_back)
