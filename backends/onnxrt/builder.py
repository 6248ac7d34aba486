"""A small ONNX graph builder, with the IR version and opset the installed onnxruntime accepts."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from mpx.errors import BackendUnavailableError

FLOAT, DOUBLE, INT64, BOOL = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.BOOL
PREFERRED_OPSETS = (21, 20, 19, 18)  # 18: axes of Reduce* as inputs; 19: fp8 Cast with `saturate`


@functools.lru_cache(maxsize=1)
def model_versions() -> tuple[int, int]:
    """(IR version, opset) of the newest pair the installed onnxruntime loads, found with real sessions."""
    import onnxruntime as ort

    errors = []
    for opset in PREFERRED_OPSETS:
        for ir_version in range(onnx.IR_VERSION, 7, -1):
            builder = GraphBuilder("probe", versions=(ir_version, opset))
            x = builder.input("x", FLOAT, (1,))
            builder.output(builder.node("Identity", [x]), FLOAT)
            try:
                ort.InferenceSession(builder.model().SerializeToString(), providers=["CPUExecutionProvider"])
            except Exception as error:  # an IR version or opset too new for this build
                errors.append(f"IR {ir_version}/opset {opset}: {str(error)[:120]}")
                continue
            return ir_version, opset
    raise BackendUnavailableError(
        f"onnxruntime {ort.__version__} loads no model of opset >= 18 ({errors[-1] if errors else 'no attempt'}); "
        "install onnxruntime >= 1.14"
    )


class GraphBuilder:
    """Collects nodes, inputs, constants and outputs; every node gets a unique name so that nodes
    onnxruntime inserts (Casts around kernels it lacks) are told apart from ours."""

    def __init__(self, name: str, versions: tuple[int, int] | None = None) -> None:
        self.name = name
        self.versions = versions
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _fresh(self, stem: str) -> str:
        self._count += 1
        return f"mpx_{stem}_{self._count}"

    def input(self, name: str, elem_type: int, shape: Sequence[int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def node(self, op_type: str, inputs: Sequence[str], outputs: int = 1, domain: str = "", **attrs: Any) -> Any:
        """Add a node; returns its output name, or a list of names when `outputs` > 1."""
        names = [self._fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(
            helper.make_node(op_type, list(inputs), names, name=self._fresh(f"node_{op_type}"), domain=domain, **attrs)
        )
        return names[0] if outputs == 1 else names

    def const(self, value: Any, elem_type: int = FLOAT) -> str:
        """A constant of any type: stored as fp32/int64/bool and cast in the graph for the others."""
        if elem_type in (INT64, BOOL, FLOAT, DOUBLE):
            dtype = {INT64: np.int64, BOOL: np.bool_, FLOAT: np.float32, DOUBLE: np.float64}[elem_type]
            name = self._fresh("const")
            self.initializers.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
            return name
        return self.cast(self.const(value, FLOAT), elem_type)

    def cast(self, x: str, elem_type: int) -> str:
        if elem_type in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2):  # IEEE overflow, not ONNX's default clamp
            return self.node("Cast", [x], to=elem_type, saturate=0)
        return self.node("Cast", [x], to=elem_type)

    def output(self, value: str, elem_type: int, name: str | None = None) -> str:
        name = name or f"out{len(self.outputs)}"
        self.nodes.append(helper.make_node("Identity", [value], [name], name=self._fresh("node_output")))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, None))
        return name

    def model(self) -> onnx.ModelProto:
        ir_version, opset = self.versions or model_versions()
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="mpx")
        model.ir_version = ir_version
        return model

    @property
    def opset(self) -> int:
        return (self.versions or model_versions())[1]
