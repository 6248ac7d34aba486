"""What every op graph builds on: the context a builder writes into, the OpGraph pair, and shared math.

A builder gets a GraphContext holding the op's inputs (already in their compute types) and returns its
outputs. Multi-node formulas compute in fp32 between their inputs and one final rounding, as torch's
kernels do (opmath): `up` and `down` are those two casts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from onnx import TensorProto

from mpx.formats import Format
from mpx.ops.spec import OpSpec

from ..builder import BOOL, FLOAT, INT64, GraphBuilder

NUMPY_TYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.bool: np.bool_}
ONNX_OF_TORCH = {
    torch.float32: FLOAT,
    torch.float16: TensorProto.FLOAT16,
    torch.bfloat16: TensorProto.BFLOAT16,
    torch.float8_e4m3fn: TensorProto.FLOAT8E4M3FN,
    torch.float8_e5m2: TensorProto.FLOAT8E5M2,
    torch.int64: INT64,
    torch.bool: BOOL,
}
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


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
    """The forward and backward builders of one op (no backward: the op has no backward graph here)."""

    forward: Builder
    backward: Builder | None = None


def boundary_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a tensor crosses the session boundary in: its own where numpy has it, else fp32."""
    return dtype if dtype in NUMPY_TYPES else torch.float32


# -- shared graph math ----------------------------------------------------------------------------------


def up(ctx: GraphContext, x: str, from_type: int | None = None) -> str:
    """x in fp32 (opmath): composite formulas compute in fp32 and round once at the end, as torch kernels do."""
    return x if (ctx.t if from_type is None else from_type) == FLOAT else ctx.cast(x, FLOAT)


def down(ctx: GraphContext, x: str, to_type: int | None = None) -> str:
    """An fp32 result rounded once to the case's format (or `to_type`)."""
    target = ctx.t if to_type is None else to_type
    return x if target == FLOAT else ctx.cast(x, target)


def f32(ctx: GraphContext, value: float) -> str:
    """An fp32 constant."""
    return ctx.const(value, FLOAT)


def unbroadcast(ctx: GraphContext, grad: str, grad_shape: Sequence[int], shape: Sequence[int]) -> str:
    """Sum `grad` (of the broadcast shape) down to `shape`: the gradient of a broadcasting op's input."""
    grad_shape, shape = tuple(grad_shape), tuple(shape)
    if grad_shape == shape:
        return grad
    lead = len(grad_shape) - len(shape)
    axes = list(range(lead)) + [lead + i for i, n in enumerate(shape) if n == 1 and grad_shape[lead + i] != 1]
    summed = ctx.node("ReduceSum", grad, ctx.ints(axes), keepdims=1) if axes else grad
    return ctx.node("Reshape", summed, ctx.ints(shape))


def swap_last(ctx: GraphContext, x: str, rank: int) -> str:
    """x with its last two axes swapped."""
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    return ctx.node("Transpose", x, perm=perm)


def reduce_all(ctx: GraphContext, op_type: str, x: str, axes: Sequence[int], keepdims: int = 0) -> str:
    """A Reduce* node over `axes` (given as an input, opset >= 18)."""
    return ctx.node(op_type, x, ctx.ints(list(axes)), keepdims=keepdims)


def is_nonfinite(ctx: GraphContext, x: str) -> str:
    """Boolean mask of inf/NaN elements: IsInf | IsNaN natively, or (x - x) != 0 as the decomposition."""
    ctx.decomposable = True
    if ctx.decompose:
        ctx.decompositions.append("IsInf/IsNaN as (x - x) != 0 in fp32 (NaN exactly for inf and NaN)")
        x32 = up(ctx, x)
        difference = ctx.node("Sub", x32, x32)
        return ctx.node("Not", ctx.node("Equal", difference, f32(ctx, 0.0)))
    return ctx.node("Or", ctx.node("IsInf", x), ctx.node("IsNaN", x))


def by_arg(ctx: GraphContext, results: dict[str, str]) -> list[str]:
    """The gradients of the op's differentiable args, in order."""
    return [results[ctx.op.args[i].name] for i in ctx.op.differentiable_args]


def storage_type(ctx: GraphContext, arg: str) -> int:
    """The onnx element type argument `arg` is stored in for this case."""
    return ONNX_OF_TORCH[next(a for a in ctx.op.args if a.name == arg).storage_dtype(ctx.fmt)]


def eps(ctx: GraphContext) -> float:
    """The op's epsilon (norms), torch's default when the op does not set one."""
    return float(ctx.attr("eps", 1e-5))
