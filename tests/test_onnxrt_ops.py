"""Op graphs on the CPU EP against the float64 reference, and failures that stay isolated."""

from __future__ import annotations

import pytest
import torch

import mpx
from mpx.ops import get_op
from mpx.ops.reference import expected, prepare
from mpx.ops.tolerance import compare

# Ops whose ONNX kernels are correctly rounded or accumulate in fp32 on the CPU EP (gelu and silu are
# left out in fp32: onnxruntime's Erf and Sigmoid are approximations, which the conformance report shows).
ACCURATE = [
    "matmul",
    "linear",
    "conv2d",
    "add",
    "mul",
    "relu",
    "exp",
    "sqrt",
    "where",
    "embedding",
    "softmax",
    "log_softmax",
    "layer_norm",
    "rms_norm",
    "batch_norm",
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "scaled_dot_product_attention",
    "mse_loss",
    "cross_entropy",
    "cast",
    "scale",
    "unscale",
    "nonfinite_check",
    "sgd_master_update",
    "adam_master_update",
    "cast_back",
]


@pytest.fixture(scope="module")
def backend():
    return mpx.get_backend("onnxrt")


def _check(backend, name, fmt, pass_, input_class="normal"):
    op, fmt = get_op(name), mpx.format(fmt)
    prepared = prepare(op, fmt, input_class, pass_, seed=1)
    got = backend.run(op, fmt, prepared.storage_inputs, pass_, prepared.storage_grad_outputs)
    comparison = compare(op, fmt, got, expected(op, fmt, prepared, pass_), prepared, pass_)
    assert comparison.passed, comparison.detail
    return got


@pytest.mark.parametrize("fmt", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ACCURATE)
def test_forward_matches_the_reference(backend, name, fmt):
    _check(backend, name, fmt, "forward")


@pytest.mark.parametrize("fmt", ["fp32", "fp16"])
@pytest.mark.parametrize("name", [n for n in ACCURATE if get_op(n).has_backward and n != "reduce_max"])
def test_backward_matches_the_reference(backend, name, fmt):
    _check(backend, name, fmt, "backward")


@pytest.mark.parametrize("name", ["silu", "gelu"])
def test_fp16_activations_match_the_reference(backend, name):
    _check(backend, name, "fp16", "forward")
    _check(backend, name, "fp16", "backward")


@pytest.mark.parametrize("name", ["cast", "cast_back", "scale", "unscale", "nonfinite_check"])
def test_precision_ops_are_exact_on_special_values(backend, name):
    # scale in e4m3 is left out: onnxruntime's Cast(saturate=0) turns exactly 480 into 448, not NaN (the
    # conformance report shows that case as a failure)
    for fmt in ("fp16", "bf16", "fp8_e5m2") + (("fp8_e4m3",) if name != "scale" else ()):
        _check(backend, name, fmt, "forward", "special")


def test_outputs_come_back_in_the_output_formats(backend):
    got = _check(backend, "adam_master_update", "bf16", "forward")
    assert [t.dtype for t in got] == [torch.float32] * 3
    assert _check(backend, "cast", "bf16", "forward")[0].dtype == torch.bfloat16


def test_a_failing_run_leaves_the_session_and_other_ops_working(backend):
    op, fmt = get_op("embedding"), mpx.format("fp32")
    weight = torch.randn(10, 4)
    good = torch.tensor([1, 2, 3])
    (before,) = backend.run(op, fmt, (weight, good))
    with pytest.raises(mpx.OpError, match="embedding forward in fp32 failed"):
        backend.run(op, fmt, (weight, torch.tensor([1, 2, 99])))  # Gather rejects the index at run time
    (after,) = backend.run(op, fmt, (weight, good))
    assert torch.equal(before, after) and torch.equal(after, weight[good])
    _check(backend, "add", "fp32", "forward")


def test_a_graph_that_fails_to_compile_is_an_isolated_unsupported_verdict(backend):
    op, fmt = get_op("matmul"), mpx.format("fp32")
    with pytest.raises(mpx.OpError, match="cannot run matmul"):
        backend.run(op, fmt, (torch.ones(2, 3), torch.ones(4, 2)))  # inner dimensions disagree
    _check(backend, "matmul", "fp32", "forward")


def test_wrong_input_dtype_names_the_storage_dtype(backend):
    with pytest.raises(mpx.OpError, match="float16"):
        backend.run(get_op("add"), mpx.format("fp16"), (torch.ones(2), torch.ones(2)))


def test_wrong_input_count_names_the_args(backend):
    with pytest.raises(mpx.OpError, match="a, b"):
        backend.run(get_op("add"), mpx.format("fp32"), (torch.ones(2),))
