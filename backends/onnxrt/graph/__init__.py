"""The onnxrt op graphs, one module per op family as in mpx/ops/definitions, combined here explicitly.

Each family module exports `GRAPHS: dict[str, OpGraph]` and registers nothing by being imported; an op's
graph lives in the module named like its family (`mpx.ops.registry.op_family`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from mpx.errors import OpError
from mpx.formats import Format
from mpx.ops.spec import OpSpec, Pass

from . import attention, elementwise, embedding, gemm, loss, norm, precision, reduction, softmax
from .base import GraphContext, OpGraph, boundary_dtype
from .build import BuiltGraph, build_model, output_dtypes

FAMILIES: tuple[ModuleType, ...] = (elementwise, reduction, gemm, attention, embedding, norm, softmax, loss, precision)


def _family_name(module: ModuleType) -> str:
    return module.__name__.rpartition(".")[2]


def _combined(families: Sequence[ModuleType]) -> tuple[dict[str, OpGraph], dict[str, str]]:
    graphs: dict[str, OpGraph] = {}
    family_of: dict[str, str] = {}
    for module in families:
        for op_name, op_graph in module.GRAPHS.items():
            if op_name in graphs:
                raise OpError(
                    f"onnxrt graph of {op_name!r} is defined in {family_of[op_name]} and {_family_name(module)}"
                )
            graphs[op_name], family_of[op_name] = op_graph, _family_name(module)
    return graphs, family_of


GRAPHS, FAMILY_OF = _combined(FAMILIES)  # op name -> its graph; op name -> the family module that defines it


def build_graph(
    op: OpSpec,
    fmt: Format,
    pass_: Pass,
    shapes: Sequence[tuple[int, ...]],
    grad_shapes: Sequence[tuple[int, ...]] = (),
    decompose: bool = False,
) -> BuiltGraph:
    """The ONNX model of (op, fmt, pass) for inputs of `shapes` (and gradients of `grad_shapes`, backward)."""
    op_graph = GRAPHS.get(op.name)
    if op_graph is None:
        raise OpError(f"the onnxrt backend has no graph for op {op.name!r}")
    return build_model(op_graph, op, fmt, pass_, shapes, grad_shapes, decompose)


__all__ = [
    "FAMILIES",
    "FAMILY_OF",
    "GRAPHS",
    "BuiltGraph",
    "GraphContext",
    "OpGraph",
    "boundary_dtype",
    "build_graph",
    "output_dtypes",
]
