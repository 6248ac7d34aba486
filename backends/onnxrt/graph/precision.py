"""Precision ops as ONNX graphs: cast, scale, unscale, the non-finite check, masked fp32 master updates
for SGD and AdamW, cast back -- so the loss-scaler / master-weight protocol runs on the EP itself.

The updates follow torch.optim's single-tensor CPU kernels rounding for rounding in fp32 (FMAs included),
and are masked with Where on found_inf, so a skipped step returns the very same bits it was given.
"""

from __future__ import annotations

from collections.abc import Callable

from ..builder import DOUBLE, FLOAT
from .base import GraphContext, OpGraph, down, f32, is_nonfinite, up


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


def _fused(ctx: GraphContext, a: str, b: str, c: str) -> str:
    """a * b + c rounded once to fp32, as torch's CPU kernels compute lerp, addcmul and add(alpha=) with
    an FMA: the fp32 product is exact in fp64, so one fp64 sum and one rounding to fp32 give the same bits
    (ONNX has no FMA op)."""
    a64, b64, c64 = (ctx.cast(x, DOUBLE) for x in (a, b, c))
    return ctx.cast(ctx.node("Add", ctx.node("Mul", a64, b64), c64), FLOAT)


def _sqrt(ctx: GraphContext, x: str) -> str:
    """A correctly rounded fp32 square root (the CPU EP's fp32 Sqrt is often 1 ULP off; its fp64 one is not)."""
    return ctx.cast(ctx.node("Sqrt", ctx.cast(x, DOUBLE)), FLOAT)


def sgd_scalars(lr: float, momentum: float, weight_decay: float) -> dict[str, float]:
    """The fp32 scalars of torch.optim.SGD's step (computed on the host in float64, as torch does)."""
    return {"weight_decay": weight_decay, "momentum": momentum, "neg_lr": -lr}


def sgd_nodes(ctx: GraphContext, scalar: Callable[[str], str]) -> list[str]:
    """torch.optim.SGD's single-tensor step with momentum and weight decay, in fp32; `scalar(name)` gives
    each value of sgd_scalars as an fp32 graph value (a constant, or an input the trainer feeds per step)."""
    master, buffer = ctx["master"], ctx["momentum_buffer"]
    direction = _fused(ctx, scalar("weight_decay"), master, up(ctx, ctx["grad"]))  # grad.add(param, alpha=wd)
    new_buffer = ctx.node("Add", ctx.node("Mul", buffer, scalar("momentum")), direction)  # buf.mul_(m).add_(d_p)
    updated = _fused(ctx, scalar("neg_lr"), new_buffer, master)  # param.add_(buf, alpha=-lr)
    skip = _skip(ctx)
    return [ctx.node("Where", skip, master, updated), ctx.node("Where", skip, buffer, new_buffer)]


def _sgd_master_update(ctx: GraphContext) -> list[str]:
    scalars = sgd_scalars(*(float(ctx.attr(k)) for k in ("lr", "momentum", "weight_decay")))
    return sgd_nodes(ctx, lambda name: f32(ctx, scalars[name]))


def adam_scalars(
    lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, step: float
) -> dict[str, float]:
    """The fp32 scalars of torch.optim.AdamW's step number `step` (float64 on the host, as torch computes them)."""
    return {
        "decay": 1 - lr * weight_decay,
        "one_minus_beta1": 1 - beta1,
        "one_minus_beta2": 1 - beta2,
        "beta2": beta2,
        "neg_step_size": -(lr / (1 - beta1**step)),
        "bias_correction2_sqrt": (1 - beta2**step) ** 0.5,  # as torch writes it (pow, not sqrt)
        "eps": eps,
    }


def adam_nodes(ctx: GraphContext, scalar: Callable[[str], str]) -> list[str]:
    """AdamW as torch.optim.AdamW's single-tensor step computes it, rounding for rounding, in fp32;
    `scalar(name)` gives each value of adam_scalars as an fp32 graph value."""
    master, exp_avg, exp_avg_sq, grad = ctx["master"], ctx["exp_avg"], ctx["exp_avg_sq"], up(ctx, ctx["grad"])
    decayed = ctx.node("Mul", master, scalar("decay"))  # param.mul_(1 - lr * wd)
    avg = _fused(ctx, scalar("one_minus_beta1"), ctx.node("Sub", grad, exp_avg), exp_avg)  # exp_avg.lerp_(grad, 1-b1)
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    scaled_grad = ctx.node("Mul", scalar("one_minus_beta2"), grad)
    avg_sq = _fused(ctx, scaled_grad, grad, ctx.node("Mul", exp_avg_sq, scalar("beta2")))
    root = ctx.node("Div", _sqrt(ctx, avg_sq), scalar("bias_correction2_sqrt"))
    denominator = ctx.node("Add", root, scalar("eps"))
    # param.addcdiv_(exp_avg, denom, value=-step_size) == param + (-step_size * exp_avg) / denom
    updated = ctx.node("Add", decayed, ctx.node("Div", ctx.node("Mul", scalar("neg_step_size"), avg), denominator))
    skip = _skip(ctx)
    return [
        ctx.node("Where", skip, master, updated),
        ctx.node("Where", skip, exp_avg, avg),
        ctx.node("Where", skip, exp_avg_sq, avg_sq),
    ]


def _adam_master_update(ctx: GraphContext) -> list[str]:
    names = ("lr", "beta1", "beta2", "eps", "weight_decay", "step")
    scalars = adam_scalars(*(float(ctx.attr(k)) for k in names))
    return adam_nodes(ctx, lambda name: f32(ctx, scalars[name]))


def _cast_back(ctx: GraphContext) -> list[str]:
    return [ctx.cast(ctx["master"], ctx.t)]


GRAPHS: dict[str, OpGraph] = {
    "cast": OpGraph(_cast, _cast_backward),
    "scale": OpGraph(_scale),
    "unscale": OpGraph(_unscale),
    "nonfinite_check": OpGraph(_nonfinite_check),
    "sgd_master_update": OpGraph(_sgd_master_update),
    "adam_master_update": OpGraph(_adam_master_update),
    "cast_back": OpGraph(_cast_back),
}
