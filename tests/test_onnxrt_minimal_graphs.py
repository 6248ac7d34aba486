"""Each case's graph is what an exporter writes for the op: every input read, every node's result used."""

from __future__ import annotations

import onnx
import pytest
import torch

import mpx
from mpx.backends.onnxrt.backend import _output_shapes
from mpx.backends.onnxrt.builder import FLOAT, GraphBuilder
from mpx.backends.onnxrt.graph import GRAPHS, build_graph
from mpx.formats import FORMATS
from mpx.ops import all_ops, get_op


def _cases() -> list[tuple[str, str, str, bool]]:
    cases = []
    for op in all_ops():
        graph = GRAPHS.get(op.name)
        for fmt in FORMATS if graph is not None else ():
            if not op.supports_format(fmt):
                continue
            for pass_ in ("forward", "backward") if op.has_backward and graph.backward else ("forward",):
                cases += [(op.name, fmt.name, pass_, False), (op.name, fmt.name, pass_, True)]
    return cases


def _model(op_name: str, fmt_name: str, pass_: str, decompose: bool) -> onnx.ModelProto:
    op, fmt = get_op(op_name), mpx.format(fmt_name)
    inputs = op.to_storage(fmt, tuple(op.make_inputs(fmt, "normal", torch.Generator().manual_seed(0))))
    shapes = tuple(tuple(t.shape) for t in inputs)
    grad_shapes = _output_shapes(op, fmt, shapes) if pass_ == "backward" else ()
    try:
        return build_graph(op, fmt, pass_, shapes, grad_shapes, decompose=decompose).model
    except mpx.OpError as error:  # e.g. no decomposition of this op: nothing to inspect
        pytest.skip(str(error))


CASES = _cases()


def test_every_op_with_a_graph_is_covered():
    assert {case[0] for case in CASES} == {op.name for op in all_ops() if op.name in GRAPHS}


@pytest.mark.parametrize(("op_name", "fmt_name", "pass_", "decompose"), CASES)
def test_every_input_is_read_and_every_node_output_reaches_a_graph_output(op_name, fmt_name, pass_, decompose):
    graph = _model(op_name, fmt_name, pass_, decompose).graph
    outputs = {o.name for o in graph.output}
    read = {name for node in graph.node for name in node.input} | outputs
    assert [i.name for i in graph.input if i.name not in read] == []
    assert [t.name for t in graph.initializer if t.name not in read] == []
    reaches = set(outputs)
    for node in reversed(graph.node):  # the nodes are in topological order
        if any(out in reaches for out in node.output):
            reaches.update(node.input)
    assert [(node.op_type, out) for node in graph.node for out in node.output if out and out not in reaches] == []
    # an Identity only where one value is two outputs or an output is an input: never to rename a result
    produced = {out for node in graph.node if node.op_type != "Identity" for out in node.output}
    passed_on = outputs | produced | {i.name for i in graph.input}
    assert [n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] not in passed_on] == []
    assert all(n.input[0] in outputs for n in graph.node if n.op_type == "Identity" and n.input[0] in produced)


def test_unread_inputs_are_dropped_and_the_backend_feeds_only_the_rest():
    backend = mpx.get_backend("onnxrt:CPUExecutionProvider")
    op, fmt = get_op("add"), mpx.format("fp32")
    a, b, grad = torch.ones(3), torch.ones(3), torch.full((3,), 2.0)
    entry = backend.compiled(op, fmt, "backward", ((3,), (3,)), ((3,),))
    assert entry.input_names == ("grad_out0",) and entry.input_index == (2,)
    assert [t.tolist() for t in backend.run(op, fmt, (a, b), "backward", (grad,))] == [[2.0] * 3, [2.0] * 3]


def test_constants_are_stored_in_their_own_type_without_cast_nodes():
    builder = GraphBuilder("constant")
    x = builder.input("x", onnx.TensorProto.FLOAT16, (2,))
    builder.output(builder.node("Mul", [x, builder.const([2.0, 0.5], onnx.TensorProto.FLOAT16)]), FLOAT)
    graph = builder.model().graph
    assert [n.op_type for n in graph.node] == ["Mul"]
    assert graph.initializer[0].data_type == onnx.TensorProto.FLOAT16
