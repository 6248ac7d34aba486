"""One op graph as a whole ONNX model: the op's inputs and outputs around its builder.

Formats numpy cannot hold (bf16, fp8) cross the session boundary as fp32 and are cast inside the graph:
those casts are exact and ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnx
import torch

from mpx.errors import OpError
from mpx.formats import Format
from mpx.ops.reference import result_formats
from mpx.ops.spec import OpSpec, Pass

from ..builder import GraphBuilder
from .base import NUMPY_TYPES, ONNX_OF_TORCH, GraphContext, OpGraph, boundary_dtype


@dataclass(frozen=True)
class BuiltGraph:
    """The model of one (op, format, pass, shapes) and what running it needs."""

    model: onnx.ModelProto
    input_names: tuple[str, ...]
    input_dtypes: tuple[Any, ...]  # numpy dtypes fed
    output_dtypes: tuple[torch.dtype, ...]  # torch dtypes the outputs are returned in
    decompositions: tuple[str, ...]
    decomposable: bool
    # which of the call's tensors (inputs, then gradients) the model reads, in order; None: all of them
    input_index: tuple[int, ...] | None = None


def output_dtypes(op: OpSpec, fmt: Format, pass_: Pass) -> tuple[torch.dtype, ...]:
    """forward: each output in its format (op.output_formats); backward: the differentiable args' storage dtypes."""
    return tuple(f.torch_dtype for f in result_formats(op, fmt, pass_))


def build_model(
    op_graph: OpGraph,
    op: OpSpec,
    fmt: Format,
    pass_: Pass,
    shapes: Sequence[tuple[int, ...]],
    grad_shapes: Sequence[tuple[int, ...]] = (),
    decompose: bool = False,
) -> BuiltGraph:
    """The ONNX model of `op_graph` for (op, fmt, pass) on inputs of `shapes`."""
    builder = GraphBuilder(f"mpx_{op.name}_{fmt.name}_{pass_}")
    values, names, feeds = {}, [], []
    for arg, shape in zip(op.args, shapes, strict=False):
        dtype = arg.storage_dtype(fmt)
        values[arg.name] = _input(builder, arg.name, dtype, shape)
        names.append(arg.name)
        feeds.append(NUMPY_TYPES[boundary_dtype(dtype)])
    arg_shapes = dict(zip((a.name for a in op.args), map(tuple, shapes), strict=False))
    ctx = GraphContext(builder, op, fmt, values, arg_shapes, op.attrs, decompose=decompose)
    if pass_ == "backward":
        if op_graph.backward is None:
            raise OpError(f"the onnxrt backend has no backward graph for op {op.name!r}")
        forward_types = output_dtypes(op, fmt, "forward")
        for i, (shape, dtype) in enumerate(zip(grad_shapes, forward_types, strict=False)):
            ctx.grad_outputs.append(_input(builder, f"grad_out{i}", dtype, shape))
            ctx.grad_shapes.append(tuple(shape))
            names.append(f"grad_out{i}")
            feeds.append(NUMPY_TYPES[boundary_dtype(dtype)])
        results = op_graph.backward(ctx)
    else:
        results = op_graph.forward(ctx)
    dtypes = output_dtypes(op, fmt, pass_)
    if len(results) != len(dtypes):
        raise OpError(f"onnxrt graph of {op.name} {pass_} gives {len(results)} outputs, the op has {len(dtypes)}")
    for value, dtype in zip(results, dtypes, strict=False):
        boundary = boundary_dtype(dtype)
        if boundary != dtype:
            value = builder.cast(value, ONNX_OF_TORCH[boundary])
        builder.output(value, ONNX_OF_TORCH[boundary])
    model = builder.model()
    kept = [i for i, name in enumerate(names) if name in builder.kept_inputs]
    return BuiltGraph(
        model,
        tuple(names[i] for i in kept),
        tuple(feeds[i] for i in kept),
        dtypes,
        tuple(ctx.decompositions),
        ctx.decomposable,
        None if len(kept) == len(names) else tuple(kept),
    )


def _input(builder: GraphBuilder, name: str, dtype: torch.dtype, shape: Sequence[int]) -> str:
    boundary = boundary_dtype(dtype)
    value = builder.input(name, ONNX_OF_TORCH[boundary], shape)
    return value if boundary == dtype else builder.cast(value, ONNX_OF_TORCH[dtype])
