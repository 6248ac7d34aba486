"""Losses as ONNX graphs, forward and backward: mse_loss and softmax cross_entropy, in fp32 throughout."""

from __future__ import annotations

import math

from ..builder import FLOAT
from .base import GraphContext, OpGraph, by_arg, down, f32, reduce_all, up


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


GRAPHS: dict[str, OpGraph] = {
    "mse_loss": OpGraph(_mse_loss, _mse_loss_backward),
    "cross_entropy": OpGraph(_cross_entropy, _cross_entropy_backward),
}
