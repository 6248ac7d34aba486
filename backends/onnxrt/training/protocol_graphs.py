"""The training protocol's EP graphs, built from the precision ops' own graph builders (graph/precision.py).

One graph per protocol call covers every tensor of the call: each tensor gets the nodes of the op's
conformance graph (unscale, nonfinite_check, sgd/adam master update, cast_back) in a context of its own.
Only where conformance bakes a hyper-parameter in as a constant (lr, betas, the step's bias corrections)
does a training graph read it from an fp32 input, fed per step: the nodes are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import onnx
import torch

from mpx.formats import FP32, Format
from mpx.formats import format as format_of
from mpx.ops.registry import get_op

from ..builder import FLOAT, INT64, GraphBuilder
from ..graph import GRAPHS
from ..graph.base import ONNX_OF_TORCH, GraphContext, boundary_dtype, f32
from ..graph.precision import adam_nodes, adam_scalars, sgd_nodes, sgd_scalars

Shapes = tuple[tuple[int, ...], ...]
SGD_SCALARS = tuple(sgd_scalars(0.0, 0.0, 0.0))
ADAM_SCALARS = tuple(adam_scalars(0.0, 0.9, 0.999, 1e-8, 0.0, 1.0))


@dataclass(frozen=True)
class ProtocolGraph:
    """One protocol graph: the model, its inputs in feed order, and what a decomposed build replaced."""

    model: onnx.ModelProto
    inputs: tuple[str, ...]
    decompositions: tuple[str, ...]


def _context(builder: GraphBuilder, op_name: str, fmt: Format, values: dict[str, str], decompose: bool) -> GraphContext:
    op = get_op(op_name)
    return GraphContext(builder, op, fmt, values, {}, op.attrs, decompose=decompose)


def _finish(builder: GraphBuilder, outputs: Sequence[tuple[str, int]], decompositions: list[str]) -> ProtocolGraph:
    for value, elem_type in outputs:
        builder.output(value, elem_type)
    model = builder.model()
    return ProtocolGraph(model, tuple(builder.kept_inputs), tuple(dict.fromkeys(decompositions)))


def _unscale_and_check(
    builder: GraphBuilder, grads: list[str], inv_scale: str, saturation_limit: float | None, decompose: bool
) -> tuple[list[str], str, list[str]]:
    """The unscale nodes of each grad (none without `inv_scale`), and found_inf: the max of the flag fed in and
    each grad's nonfinite_check (plus |grad| >= saturation_limit where the EP saturates)."""
    flags = [builder.input("found_inf", FLOAT, (1,))]
    unscaled, decompositions = [], []
    for grad in grads:
        if inv_scale:
            ctx = _context(builder, "unscale", FP32, {"grad": grad, "inv_scale": inv_scale}, decompose)
            unscaled.append(GRAPHS["unscale"].forward(ctx)[0])
        check = _context(builder, "nonfinite_check", FP32, {"x": grad}, decompose)
        flags.append(builder.node("Reshape", [GRAPHS["nonfinite_check"].forward(check)[0], check.ints([1])]))
        decompositions += check.decompositions
        if saturation_limit is not None:
            peak = builder.node("ReduceMax", [builder.node("Abs", [grad])], keepdims=1)
            reached = builder.node("GreaterOrEqual", [peak, f32(check, saturation_limit)])
            flags.append(builder.node("Reshape", [builder.cast(reached, FLOAT), check.ints([1])]))
    found = builder.node("Max", flags) if len(flags) > 1 else flags[0]
    return unscaled, found, decompositions


def unscale_check_graph(
    shapes: Shapes, saturation_limit: float | None, decompose: bool = False, unscale: bool = True
) -> ProtocolGraph:
    """grad_i * inv_scale for every fp32 grad, and found_inf: the max of the flag fed in and each grad's
    nonfinite_check (plus |grad| >= saturation_limit where the EP saturates). Outputs: grads, then found_inf.
    With `unscale` False (a scale of 1: nothing to divide) only the check: found_inf is the one output."""
    builder = GraphBuilder("mpx_train_unscale_check" if unscale else "mpx_train_check")
    inv_scale = builder.input("inv_scale", FLOAT, ()) if unscale else ""
    grads = [builder.input(f"grad{i}", FLOAT, shape) for i, shape in enumerate(shapes)]
    unscaled, found, decompositions = _unscale_and_check(builder, grads, inv_scale, saturation_limit, decompose)
    return _finish(builder, [*((u, FLOAT) for u in unscaled), (found, FLOAT)], decompositions)


def check_adamw_graph(
    size: int, saturation_limit: float | None, decompose: bool = False, unscale: bool = True
) -> ProtocolGraph:
    """unscale_check_graph and adam_graph of one flat array in one graph, the update masked by the found_inf the
    check computes: what the two compute, in one session run. Outputs: [grad unscaled,] found_inf, master,
    exp_avg, exp_avg_sq."""
    builder = GraphBuilder("mpx_train_unscale_check_adamw" if unscale else "mpx_train_check_adamw")
    inv_scale = builder.input("inv_scale", FLOAT, ()) if unscale else ""
    grad = builder.input("grad0", FLOAT, (size,))
    unscaled, found, decompositions = _unscale_and_check(builder, [grad], inv_scale, saturation_limit, decompose)
    values = {"found_inf": builder.node("Reshape", [found, builder.const([], INT64)])}  # a scalar, as fed to adam
    values["grad"] = unscaled[0] if unscaled else grad
    moments = ("exp_avg", "exp_avg_sq")
    updated = _update(builder, "adam_master_update", adam_nodes, 0, (size,), values, ("master", *moments), ADAM_SCALARS)
    return _finish(builder, [*((u, FLOAT) for u in unscaled), (found, FLOAT), *updated], decompositions)


def _update_graph(
    name: str, op_name: str, moments: tuple[str, ...], scalars: tuple[str, ...], shapes: Shapes, nodes: Callable
) -> ProtocolGraph:
    """Per tensor i: master_i, grad_i, its moments and its fp32 scalars in; the new master and moments out."""
    builder = GraphBuilder(name)
    values = {"found_inf": builder.input("found_inf", FLOAT, ())}
    outputs = []
    for i, shape in enumerate(shapes):
        outputs += _update(builder, op_name, nodes, i, shape, values, ("master", "grad", *moments), scalars)
    return _finish(builder, outputs, [])


def _update(
    builder: GraphBuilder,
    op_name: str,
    nodes: Callable,
    i: int,
    shape: tuple[int, ...],
    values: dict[str, str],
    inputs: tuple[str, ...],
    scalars: tuple[str, ...],
) -> list[tuple[str, int]]:
    """The update nodes of tensor i: `values` plus `inputs` (fed as <name>i) and its fp32 scalars fed in."""
    values = {**values, **{arg: builder.input(f"{arg}{i}", FLOAT, shape) for arg in inputs}}
    feeds = {s: builder.input(f"{s}{i}", FLOAT, ()) for s in scalars}
    ctx = _context(builder, op_name, FP32, values, decompose=False)
    return [(value, FLOAT) for value in nodes(ctx, feeds.__getitem__)]


def sgd_graph(shapes: Shapes) -> ProtocolGraph:
    """torch.optim.SGD's masked step (sgd_master_update's nodes): outputs master_i, momentum_buffer_i per tensor."""
    return _update_graph("mpx_train_sgd", "sgd_master_update", ("momentum_buffer",), SGD_SCALARS, shapes, sgd_nodes)


def adam_graph(shapes: Shapes) -> ProtocolGraph:
    """torch.optim.AdamW's masked step (adam_master_update's nodes): master_i, exp_avg_i, exp_avg_sq_i out."""
    moments = ("exp_avg", "exp_avg_sq")
    return _update_graph("mpx_train_adamw", "adam_master_update", moments, ADAM_SCALARS, shapes, adam_nodes)


def cast_back_graph(shapes: Shapes, dtypes: tuple[torch.dtype, ...]) -> ProtocolGraph:
    """Each fp32 master rounded to its parameter's format on the EP (cast_back's nodes); formats numpy lacks
    (bf16, fp8) leave the graph widened to fp32 again, exactly."""
    builder = GraphBuilder("mpx_train_cast_back")
    outputs = []
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=True)):
        master = builder.input(f"master{i}", FLOAT, shape)
        ctx = _context(builder, "cast_back", format_of(dtype), {"master": master}, decompose=False)
        value = GRAPHS["cast_back"].forward(ctx)[0]
        boundary = boundary_dtype(dtype)
        if boundary != dtype:
            value = builder.cast(value, ONNX_OF_TORCH[boundary])
        outputs.append((value, ONNX_OF_TORCH[boundary]))
    return _finish(builder, outputs, [])


__all__ = ["ProtocolGraph", "adam_graph", "cast_back_graph", "check_adamw_graph", "sgd_graph", "unscale_check_graph"]
