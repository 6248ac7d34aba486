"""A small ONNX graph builder, with the IR version and opset the installed onnxruntime accepts."""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from mpx.errors import BackendUnavailableError

from .native_log import FATAL

FLOAT, DOUBLE, INT64, BOOL = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.BOOL
FLOAT16 = TensorProto.FLOAT16
PREFERRED_OPSETS = (21, 20, 19, 18)  # 18: axes of Reduce* as inputs; 19: fp8 Cast with `saturate`


@functools.lru_cache(maxsize=1)
def model_versions() -> tuple[int, int]:
    """(IR version, opset) of the newest pair the installed onnxruntime loads, found with real sessions."""
    import onnxruntime as ort

    errors = []
    quiet = ort.SessionOptions()
    quiet.log_severity_level = FATAL  # a model too new for this build is an expected answer, raised, not logged
    for opset in PREFERRED_OPSETS:
        for ir_version in range(onnx.IR_VERSION, 7, -1):
            builder = GraphBuilder("probe", versions=(ir_version, opset))
            x = builder.input("x", FLOAT, (1,))
            builder.output(builder.node("Identity", [x]), FLOAT)
            try:
                ort.InferenceSession(
                    builder.model().SerializeToString(), quiet, providers=["CPUExecutionProvider"], enable_fallback=0
                )
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
        self._output_values: list[str] = []
        self.kept_inputs: list[str] = []  # the inputs model() kept (the ones some node reads)

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
        """A constant stored in its own element type, as an exporter writes it (no Cast node)."""
        name = self._fresh("const")
        numpy_types = {INT64: np.int64, BOOL: np.bool_, FLOAT: np.float32, DOUBLE: np.float64, FLOAT16: np.float16}
        if elem_type in numpy_types:
            self.initializers.append(
                onnx.numpy_helper.from_array(np.asarray(value, dtype=numpy_types[elem_type]), name)
            )
        else:  # bf16 / fp8: onnx rounds fp32 values to the type (nearest even, as a Cast does)
            array = np.asarray(value, dtype=np.float32)
            self.initializers.append(helper.make_tensor(name, elem_type, array.shape, array.ravel().tolist()))
        return name

    def cast(self, x: str, elem_type: int) -> str:
        if elem_type in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2):  # IEEE overflow, not ONNX's default clamp
            return self.node("Cast", [x], to=elem_type, saturate=0)
        return self.node("Cast", [x], to=elem_type)

    def output(self, value: str, elem_type: int, name: str | None = None) -> str:
        """Make `value` a graph output called `name` (out0, out1, ... by default)."""
        name = name or f"out{len(self.outputs)}"
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, None))
        self._output_values.append(value)
        return name

    def model(self) -> onnx.ModelProto:
        """The graph as an exporter writes it: outputs named on the nodes that make them, no node whose
        result reaches no output, no input or constant that nothing reads."""
        ir_version, opset = self.versions or model_versions()
        nodes = _named_outputs(self.nodes, self._output_values, [o.name for o in self.outputs], self._count)
        nodes = _live(nodes, {o.name for o in self.outputs})
        read = {name for node in nodes for name in node.input} | {o.name for o in self.outputs}
        self.kept_inputs = [i.name for i in self.inputs if i.name in read]
        inputs = [i for i in self.inputs if i.name in read]
        initializers = [t for t in self.initializers if t.name in read]
        graph = helper.make_graph(nodes, self.name, inputs, self.outputs, initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="mpx")
        model.ir_version = ir_version
        return model

    @property
    def opset(self) -> int:
        return (self.versions or model_versions())[1]


def _named_outputs(
    nodes: list[onnx.NodeProto], values: list[str], names: list[str], count: int
) -> list[onnx.NodeProto]:
    """Nodes whose results are graph outputs write them under the output's name; an Identity only where a
    value is an input, a constant, or a second output of the same value."""
    nodes = [copy.deepcopy(node) for node in nodes]
    produced = {out for node in nodes for out in node.output}
    renamed: dict[str, str] = {}
    for value, name in zip(values, names, strict=True):
        if value in produced and value not in renamed:
            renamed[value] = name
        else:
            count += 1
            nodes.append(helper.make_node("Identity", [renamed.get(value, value)], [name], name=f"mpx_output_{count}"))
    for node in nodes:
        node.input[:] = [renamed.get(i, i) for i in node.input]
        node.output[:] = [renamed.get(o, o) for o in node.output]
    return nodes


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes some graph output depends on, in their order."""
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    needed, stack = set(), list(outputs)
    while stack:
        index = producer.get(stack.pop())
        if index is not None and index not in needed:
            needed.add(index)
            stack.extend(nodes[index].input)
    return [node for index, node in enumerate(nodes) if index in needed]
