"""Mixed-precision inference of real models on an EP: export from torch, convert to the policy's compute
format with the fp32-kept ops of torch.autocast, run, and report accuracy against fp32 and latency.

fp16 conversion is onnxconverter-common's `convert_float_to_float16` (op_block_list + keep_io_types); bf16
retargets that converter's fp16 graph to bf16 (the converter has no bf16 mode), so both formats keep the
same ops in fp32.

Benchmark code, not part of the installed package: bench_onnxrt_mixed_inference.py runs it (the script's
folder is on sys.path) and tests/test_onnxrt_models.py loads it from this file.
"""

from __future__ import annotations

import io
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from mpx.backends.onnxrt.providers import CPU, Options, create_session, session_options, target
from mpx.errors import PolicyError, unknown_name_message
from mpx.formats import BF16, FP16, FP32
from mpx.policy import Policy
from mpx.policy import policy as lookup_policy

# ONNX ops that torch.autocast runs in fp32 (softmax, norms, exp/log/pow, reductions, erf in GELU): kept fp32.
FP32_OPS = (
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "Exp",
    "Log",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Erf",
    "Div",
)
EXPORT_OPSET = 18  # the legacy TorchScript exporter (no onnxscript needed) writes opset 18 and IR 8


class MlpClassifier(nn.Module):
    """A small MLP classifier ending in softmax probabilities."""

    def __init__(self, features: int = 32, hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.body(x), dim=-1)


class TinyTransformerBlock(nn.Module):
    """Pre-norm self-attention + GELU MLP with residuals (a GPT block without the causal mask)."""

    def __init__(self, width: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = torch.softmax(q @ k.transpose(-1, -2) / (width // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((scores @ v).transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


def models(seed: int = 0) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """The two models with example inputs, seeded."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    return {
        "mlp-classifier": (MlpClassifier().eval(), torch.randn(256, 32, generator=generator)),
        "transformer-block": (TinyTransformerBlock().eval(), torch.randn(8, 32, 64, generator=generator)),
    }


def export(model: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    """The model as ONNX through torch's TorchScript exporter (dynamo=False: works offline, no onnxscript)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), buffer, dynamo=False, input_names=["x"], output_names=["y"], opset_version=EXPORT_OPSET
        )
    return onnx.load_from_string(buffer.getvalue())


def convert(model: onnx.ModelProto, policy: Policy | str) -> onnx.ModelProto:
    """The model in the policy's compute format, FP32_OPS kept in fp32, inputs and outputs fp32."""
    policy = lookup_policy(policy)
    fmt = policy.compute
    if fmt == FP32:
        return model
    if fmt not in (FP16, BF16):
        raise PolicyError(
            f"mixed-precision inference converts to fp16 or bf16, not {fmt.name}; use fp16-mixed or bf16-mixed"
        )
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(
            _inline_identities(model), keep_io_types=True, op_block_list=list(FP32_OPS)
        )
    return _retarget_to_bf16(converted) if fmt == BF16 else converted


def _inline_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copies of initializers instead of Identity nodes on them (the exporter shares equal weights that
    way, and the converter then gives the Identity an fp16 output in an fp32 context)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    for node in list(graph.node):
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
            graph.node.remove(node)
    return model


def _to_bf16(tensor: onnx.TensorProto) -> onnx.TensorProto:
    values = torch.from_numpy(onnx.numpy_helper.to_array(tensor).astype(np.float32)).to(torch.bfloat16)
    return onnx.TensorProto(
        name=tensor.name,
        data_type=onnx.TensorProto.BFLOAT16,
        dims=tensor.dims,
        raw_data=values.view(torch.int16).numpy().tobytes(),
    )


def _retarget_to_bf16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn a converter-made fp16 graph into the same graph in bf16 (types, Cast targets, initializers)."""
    fp16, bf16 = onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.tensor_type.elem_type == fp16:
            value.type.tensor_type.elem_type = bf16
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == fp16:
                attribute.i = bf16
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == fp16:  # Constant nodes
                attribute.t.CopyFrom(_to_bf16(attribute.t))
    for tensor in graph.initializer:
        if tensor.data_type == fp16:
            tensor.CopyFrom(_to_bf16(tensor))
    return model


@dataclass(frozen=True)
class InferenceReport:
    """Accuracy of a converted model against fp32 on the same EP, and latency of both."""

    model: str
    policy: str
    provider: str
    status: str  # ran | unsupported
    reason: str
    max_abs_error: float
    relative_l2_error: float
    top1_agreement: float | None  # classifiers only
    fp32_ms: float
    converted_ms: float
    fp32_kept_ops: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _session(model: onnx.ModelProto, provider: str, options: Options) -> Any:
    where = target(provider, options)
    return create_session(model.SerializeToString(), where, session_options(where))


def _latency_ms(session: Any, feed: dict[str, np.ndarray], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def evaluate(
    name: str,
    policy: Policy | str = "fp16-mixed",
    provider: str = CPU,
    provider_options: Options = (),
    repeats: int = 20,
    seed: int = 0,
) -> InferenceReport:
    """Export model `name` (see `models`), convert it for `policy`, run both on `provider`, compare."""
    policy = lookup_policy(policy)
    available = models(seed)
    if name not in available:
        raise PolicyError(unknown_name_message("model", name, available))
    module, example = available[name]
    reference = export(module, example)
    converted = convert(reference, policy)
    kept = tuple(sorted({n.op_type for n in converted.graph.node} & set(FP32_OPS)))
    feed = {"x": example.numpy()}
    fp32_session = _session(reference, provider, provider_options)
    want = np.asarray(fp32_session.run(None, feed)[0], dtype=np.float64)
    fp32_ms = _latency_ms(fp32_session, feed, repeats)
    label = policy.name or str(policy)
    try:
        session = _session(converted, provider, provider_options)
    except RuntimeError as error:
        nan = float("nan")
        reason = str(error)[:300]
        return InferenceReport(name, label, provider, "unsupported", reason, nan, nan, None, fp32_ms, nan, kept)
    got = np.asarray(session.run(None, feed)[0], dtype=np.float64)
    top1 = float((got.argmax(-1) == want.argmax(-1)).mean()) if name == "mlp-classifier" else None
    return InferenceReport(
        name,
        label,
        provider,
        "ran",
        "",
        float(np.abs(got - want).max()),
        float(np.linalg.norm(got - want) / np.linalg.norm(want)),
        top1,
        fp32_ms,
        _latency_ms(session, feed, repeats),
        kept,
    )
