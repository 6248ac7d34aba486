"""Precision ops as ONNX graphs: cast, scale, unscale, the non-finite check, masked fp32 master updates
for SGD and Adam, cast back -- so the loss-scaler / master-weight protocol runs on the EP itself."""

from __future__ import annotations

from .graph_math import up
from .graphs import GRAPHS, GraphContext, OpGraph


def _cast(ctx: GraphContext) -> list[str]:
    return [ctx.cast(ctx["x"], ctx.t)]


def _cast_backward(ctx: GraphContext) -> list[str]:
    return [up(ctx, ctx.grad_outputs[0])]


GRAPHS["cast"] = OpGraph(_cast, _cast_backward)
