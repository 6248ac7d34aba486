"""Op graphs: the registry of ONNX builders per op, and the context a builder writes into.

A builder gets a GraphContext holding the op's inputs (already in their compute types) and returns its
outputs; `build_graph` wraps it with the model's inputs and outputs. Formats numpy cannot hold (bf16,
fp8) cross the session boundary as fp32 and are cast inside the graph: those casts are exact and ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto

from mpx.errors import OpError
from mpx.formats import Format
from mpx.ops.check import result_formats
from mpx.ops.spec import OpSpec, Pass

from .builder import BOOL, FLOAT, INT64, GraphBuilder

NUMPY_TYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.bool: np.bool_}
ONNX_OF_TORCH = {torch.float32: FLOAT, torch.float16: TensorProto.FLOAT16, torch.bfloat16: TensorProto.BFLOAT16,
                 torch.float8_e4m3fn: TensorProto.FLOAT8E4M3FN, torch.float8_e5m2: TensorProto.FLOAT8E5M2,
                 torch.int64: INT64, torch.bool: BOOL}


@dataclass
class GraphContext:
    """What an op builder sees: the builder, the op, its format, named inputs, shapes and attributes."""

    b: GraphBuilder
    op: OpSpec
    fmt: Format
    values: dict[str, str]  # arg name -> value name in the graph
    shapes: dict[str, tuple[int, ...]]
    attrs: Mapping[str, Any]
    grad_outputs: list[str] = field(default_factory=list)
    grad_shapes: list[tuple[int, ...]] = field(default_factory=list)
    decompose: bool = False
    decompositions: list[str] = field(default_factory=list)  # what a decomposed build replaced, for the verdict
    decomposable: bool = False  # the builder has a decomposition it can use when a native op is missing

    @property
    def t(self) -> int:
        """The onnx element type of the case's format."""
        return self.fmt.onnx_type

    def __getitem__(self, arg: str) -> str:
        return self.values[arg]

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def node(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        return self.b.node(op_type, list(inputs), outputs=outputs, **attrs)

    def const(self, value: Any, elem_type: int | None = None) -> str:
        return self.b.const(value, self.t if elem_type is None else elem_type)

    def ints(self, values: Sequence[int]) -> str:
        return self.b.const(list(values), INT64)

    def cast(self, x: str, elem_type: int) -> str:
        return self.b.cast(x, elem_type)


Builder = Callable[[GraphContext], Sequence[str]]


@dataclass(frozen=True)
class OpGraph:
    """The forward and backward builders of one op."""

    forward: Builder
    backward: Builder | None = None


GRAPHS: dict[str, OpGraph] = {}


def boundary_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a tensor crosses the session boundary in: its own where numpy has it, else fp32."""
    return dtype if dtype in NUMPY_TYPES else torch.float32


@dataclass(frozen=True)
class BuiltGraph:
    model: onnx.ModelProto
    input_names: tuple[str, ...]
    input_dtypes: tuple[Any, ...]  # numpy dtypes fed
    output_dtypes: tuple[torch.dtype, ...]  # torch dtypes the outputs are returned in
    decompositions: tuple[str, ...]
    decomposable: bool


def output_dtypes(op: OpSpec, fmt: Format, pass_: Pass) -> tuple[torch.dtype, ...]:
    """forward: each output in its format (op.output_formats); backward: the differentiable args' storage dtypes."""
    return tuple(f.torch_dtype for f in result_formats(op, fmt, pass_))


def build_graph(
    op: OpSpec, fmt: Format, pass_: Pass, shapes: Sequence[tuple[int, ...]],
    grad_shapes: Sequence[tuple[int, ...]] = (), decompose: bool = False,
) -> BuiltGraph:
    """The ONNX model of (op, fmt, pass) for inputs of `shapes`."""
    from . import graphs_elementwise, graphs_gemm, graphs_norms, graphs_precision  # noqa: F401 - registers graphs

    op_graph = GRAPHS.get(op.name)
    if op_graph is None:
        raise OpError(f"the onnxrt backend has no graph for op {op.name!r}")
    builder = GraphBuilder(f"mpx_{op.name}_{fmt.name}_{pass_}")
    values, names, feeds = {}, [], []
    for arg, shape in zip(op.args, shapes, strict=False):
        dtype = arg.storage_dtype(fmt)
        values[arg.name] = _input(builder, arg.name, dtype, shape)
        names.append(arg.name)
        feeds.append(NUMPY_TYPES[boundary_dtype(dtype)])
    ctx = GraphContext(builder, op, fmt, values, dict(zip((a.name for a in op.args), map(tuple, shapes), strict=False)),
                       op.attrs, decompose=decompose)
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
    return BuiltGraph(builder.model(), tuple(names), tuple(feeds), dtypes, tuple(ctx.decompositions), ctx.decomposable)


def _input(builder: GraphBuilder, name: str, dtype: torch.dtype, shape: Sequence[int]) -> str:
    boundary = boundary_dtype(dtype)
    value = builder.input(name, ONNX_OF_TORCH[boundary], shape)
    return value if boundary == dtype else builder.cast(value, ONNX_OF_TORCH[dtype])
