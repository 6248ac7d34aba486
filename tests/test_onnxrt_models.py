"""Mixed-precision inference of exported torch models on the EP (fp16 converted with fp32-kept ops).

The code under test is benchmark code (benchmarks/onnx_models.py), loaded from its file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import onnx
import pytest

import mpx

ONNX_MODELS = Path(__file__).resolve().parents[1] / "benchmarks" / "onnx_models.py"


def _load_onnx_models():
    spec = importlib.util.spec_from_file_location("onnx_models", ONNX_MODELS)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("onnx_models", module)  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return sys.modules["onnx_models"]


onnx_models = _load_onnx_models()
convert, evaluate, export, models = onnx_models.convert, onnx_models.evaluate, onnx_models.export, onnx_models.models


@pytest.fixture(scope="module")
def exported():
    return {name: export(module, example) for name, (module, example) in models().items()}


def test_fp16_conversion_keeps_the_autocast_fp32_ops_in_fp32(exported):
    converted = convert(exported["transformer-block"], "fp16-mixed")
    fp16_values = {i.name for i in converted.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    casts = {o: n for n in converted.graph.node if n.op_type == "Cast" for o in n.output}
    for node in converted.graph.node:
        if node.op_type in ("Softmax", "LayerNormalization"):
            for name in node.input:
                assert name not in fp16_values
                if name in casts:
                    assert casts[name].attribute[0].i == onnx.TensorProto.FLOAT
    assert fp16_values, "the GEMM weights are fp16"
    assert [i.type.tensor_type.elem_type for i in converted.graph.input] == [onnx.TensorProto.FLOAT]


def test_fp16_mlp_classifier_agrees_with_fp32():
    report = evaluate("mlp-classifier", "fp16-mixed", repeats=3)
    assert report.status == "ran"
    assert report.top1_agreement >= 0.98 and report.max_abs_error < 1e-3
    assert "Softmax" in report.fp32_kept_ops and report.fp32_ms > 0 and report.converted_ms > 0


def test_fp16_transformer_block_agrees_with_fp32():
    report = evaluate("transformer-block", "fp16-mixed", repeats=3)
    assert report.status == "ran" and report.relative_l2_error < 1e-3
    assert {"LayerNormalization", "Softmax"} <= set(report.fp32_kept_ops)


def test_bf16_models_on_an_ep_without_bf16_gemms_are_unsupported_with_the_reason():
    report = evaluate("mlp-classifier", "bf16-mixed", repeats=1)
    backend = mpx.get_backend("onnxrt")
    if backend.support(mpx.ops.get_op("linear"), mpx.format("bf16")).runs:
        assert report.status == "ran"
    else:
        assert report.status == "unsupported" and "NOT_IMPLEMENTED" in report.reason


def test_fp32_policy_leaves_the_model_as_exported(exported):
    assert convert(exported["mlp-classifier"], "fp32") is exported["mlp-classifier"]


def test_fp8_policy_is_refused_with_the_ones_that_work(exported):
    with pytest.raises(mpx.PolicyError, match="fp16-mixed or bf16-mixed"):
        convert(exported["mlp-classifier"], "fp8-hybrid")


def test_unknown_model_names_the_known_ones():
    with pytest.raises(mpx.PolicyError, match="mlp-classifier"):
        evaluate("resnet", "fp16-mixed")
