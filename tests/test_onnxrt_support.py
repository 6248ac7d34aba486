"""Truthful support on the CPU EP, checked against the optimized graph onnxruntime really runs."""

from __future__ import annotations

import os

import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import mpx
from mpx.backends.onnxrt.graph import build_graph
from mpx.backends.onnxrt.placement import node_events, profile_nodes
from mpx.backends.onnxrt.providers import Target
from mpx.ops import all_ops, get_op

FP32, FP16, BF16 = mpx.format("fp32"), mpx.format("fp16"), mpx.format("bf16")
CPU_EP = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def backend():
    return mpx.get_backend(f"onnxrt:{CPU_EP}")


def _optimized(model: onnx.ModelProto, tmp_path) -> onnx.ModelProto:
    """The graph onnxruntime runs, read independently of the backend through SessionOptions."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = os.fspath(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), options, providers=[CPU_EP])
    return onnx.load(options.optimized_model_filepath)


def _single_node(op_type: str, elem_type: int) -> onnx.ModelProto:
    from mpx.backends.onnxrt.builder import model_versions

    a = helper.make_tensor_value_info("a", elem_type, [4, 8])
    b = helper.make_tensor_value_info("b", elem_type, [8, 8])
    y = helper.make_tensor_value_info("y", elem_type, None)
    graph = helper.make_graph([helper.make_node(op_type, ["a", "b"], ["y"], name="ours")], "g", [a, b], [y])
    ir_version, opset = model_versions()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


DECOMPOSED_IN_FP32 = {"reduce_max": "ReduceMax drops NaN"}  # op -> what its fp32 graph works around


@pytest.mark.parametrize("op", all_ops(), ids=lambda op: op.name)
def test_fp32_ops_are_native_or_say_what_they_work_around(backend, op):
    for pass_ in ("forward", "backward") if op.has_backward else ("forward",):
        support = backend.support(op, FP32, pass_)
        if op.name in DECOMPOSED_IN_FP32:
            assert support.status == "decomposed" and DECOMPOSED_IN_FP32[op.name] in support.reason, pass_
        else:
            assert support.status == "native", (pass_, support.reason)


def test_reduce_max_propagates_nan_as_torch_amax(backend):
    x = torch.tensor([[1.0, float("nan"), 3.0], [1.0, 2.0, 3.0]])
    (got,) = backend.run(get_op("reduce_max"), FP32, (x,))
    assert torch.isnan(got[0]) and got[1] == 3.0


def test_fp16_matmul_is_upcast_because_the_optimized_graph_casts_it(backend, tmp_path):
    support = backend.support(get_op("matmul"), FP16)
    assert support.status == "upcast" and "MatMul" in support.reason
    optimized = _optimized(_single_node("MatMul", TensorProto.FLOAT16), tmp_path)
    matmul = next(n for n in optimized.graph.node if n.op_type == "MatMul")
    producers = {out: n for n in optimized.graph.node for out in n.output}
    for name in matmul.input:
        cast = producers[name]
        assert cast.op_type == "Cast" and cast.name != "ours"
        assert next(a.i for a in cast.attribute if a.name == "to") == TensorProto.FLOAT


@pytest.mark.parametrize(
    "name", ["matmul", "linear", "conv2d", "add", "mul", "relu", "exp", "sqrt", "softmax", "reduce_sum"]
)
def test_fp16_ops_the_cpu_ep_lacks_are_upcast_not_native(backend, name):
    compiled = backend.compiled(*_case(get_op(name), FP16))
    assert compiled.support.status == "upcast", compiled.support.reason
    assert "Cast" in compiled.nodes


def test_fp16_ops_with_cpu_kernels_stay_native(backend, tmp_path):
    optimized = _optimized(_single_node("MatMul", TensorProto.FLOAT), tmp_path)
    assert [n.op_type for n in optimized.graph.node] == ["MatMul"]
    assert backend.support(get_op("embedding"), FP16).status == "native"  # Gather moves fp16 as it is


@pytest.mark.parametrize("name", ["matmul", "add", "relu", "exp", "reduce_sum"])
def test_bf16_gaps_are_unsupported_with_the_runtime_reason(backend, name):
    support = backend.support(get_op(name), BF16)
    assert support.status == "unsupported" and "NOT_IMPLEMENTED" in support.reason


def test_bf16_matmul_really_has_no_session():
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        ort.InferenceSession(_single_node("MatMul", TensorProto.BFLOAT16).SerializeToString(), providers=[CPU_EP])


def test_a_missing_native_op_is_decomposed_and_says_so(backend):
    support = backend.support(get_op("gelu"), BF16)
    assert support.status == "decomposed"
    assert "Erf" in support.reason and "Gelu" in support.reason


def test_unsupported_case_raises_a_clear_error_on_run(backend):
    op = get_op("matmul")
    a, b = torch.ones(2, 3, dtype=torch.bfloat16), torch.ones(3, 2, dtype=torch.bfloat16)
    with pytest.raises(mpx.OpError, match="cannot run matmul forward in bf16"):
        backend.run(op, BF16, (a, b))


@pytest.mark.parametrize("fmt", [FP32, FP16, BF16], ids=str)
def test_decomposed_nonfinite_check_agrees_with_the_native_one(fmt):
    op = get_op("nonfinite_check")
    values = torch.tensor([[1.0, float("inf")], [2.0, 3.0]]), torch.tensor([[1.0, float("nan")], [2.0, -3.0]])
    results = []
    for decompose in (False, True):
        built = build_graph(op, fmt, "forward", [(2, 2)], decompose=decompose)
        session = ort.InferenceSession(built.model.SerializeToString(), providers=[CPU_EP])
        results.append(
            [
                float(session.run(None, {"x": v.numpy().astype(built.input_dtypes[0])})[0])
                for v in (*values, torch.ones(2, 2))
            ]
        )
        assert bool(built.decompositions) == decompose
    assert results[0] == results[1] == [1.0, 1.0, 0.0]


def test_support_verdicts_and_sessions_are_cached(backend):
    op = get_op("mul")
    backend.support(op, FP16)
    misses, hits = backend.cache.misses, backend.cache.hits
    backend.support(op, FP16)
    assert (backend.cache.misses, backend.cache.hits) == (misses, hits + 1)


def test_profile_names_the_provider_of_every_node():
    built = build_graph(get_op("matmul"), FP16, "forward", [(4, 8), (8, 2)])
    _, nodes = profile_nodes(built.model, Target(CPU_EP), (), allow_fallback=True)
    assert {n["provider"] for n in nodes} == {CPU_EP}
    matmul = next(n for n in nodes if n["op"] == "MatMul")
    assert matmul["input_types"] == ["float", "float"]  # the fp16 MatMul ran on fp32 inputs


def test_node_events_ignore_session_level_events():
    events = [
        {"cat": "Session", "name": "model_run", "args": {}},
        {
            "cat": "Node",
            "name": "n1_kernel_time",
            "args": {"op_name": "Add", "provider": "XEP", "input_type_shape": [{"float16": [2]}]},
        },
    ]
    assert node_events(events) == [{"name": "n1", "op": "Add", "provider": "XEP", "input_types": ["float16"]}]


def _case(op, fmt):
    inputs = op.to_storage(fmt, tuple(op.make_inputs(fmt, "normal", torch.Generator().manual_seed(0))))
    return op, fmt, "forward", tuple(tuple(t.shape) for t in inputs)


def test_profile_based_verdict_sees_the_inserted_casts_too():
    """The path for EPs that cannot save their optimized graph (compiled nodes): the profile decides."""
    from mpx.backends.onnxrt.placement import _from_profile

    fp16 = build_graph(get_op("matmul"), FP16, "forward", [(4, 8), (8, 2)])
    fp32 = build_graph(get_op("matmul"), FP32, "forward", [(4, 8), (8, 2)])
    assert _from_profile(fp16.model, FP16.onnx_type, Target(CPU_EP), ()).status == "upcast"
    assert _from_profile(fp32.model, FP32.onnx_type, Target(CPU_EP), ()).status == "native"
