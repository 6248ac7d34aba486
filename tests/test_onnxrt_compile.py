"""The tiny GPT through mpx's torch.compile backend on the CPU EP: gradients, training, placement, export errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnxruntime", reason="needs the onnxrt extra (pip install mpx-precision[onnxrt])")
pytest.importorskip("onnxscript", reason="needs the onnxrt extra (pip install mpx-precision[onnxrt])")

from mpx.backends.onnxrt.providers import CPU, target  # noqa: E402
from mpx.backends.onnxrt.training import OrtCompiler, compile_model  # noqa: E402
from mpx.backends.onnxrt.training.placement_report import summary_line  # noqa: E402
from mpx.conformance.model_zoo import VOCAB, TinyGPT, sequence_data  # noqa: E402
from mpx.errors import OpError  # noqa: E402

COMPUTE = {"fp32": None, "fp16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
# max |grad - eager grad| / max |eager grad| allowed per format: a few units of the format's epsilon
GRAD_TOLERANCE = {"fp32": 1e-5, "fp16-mixed": 4e-3, "bf16-mixed": 3e-2}
GRAPH_DTYPE = {"fp32": "float32", "fp16-mixed": "float16", "bf16-mixed": "bfloat16"}


def gpt_loss(model: torch.nn.Module, batch, dtype: torch.dtype | None) -> torch.Tensor:
    tokens, targets = batch
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = model(tokens)
    return F.cross_entropy(logits.reshape(-1, VOCAB).float(), targets.reshape(-1))


@pytest.fixture(scope="module", params=list(COMPUTE))
def first_step(request):
    """(policy, compiled model, its compiler, eager twin, batch) after one backward pass on each."""
    policy, dtype = request.param, COMPUTE[request.param]
    torch.manual_seed(0)
    eager = TinyGPT()
    model = copy.deepcopy(eager)
    compiler = OrtCompiler(target(CPU))
    compile_model(model, compiler)
    batch = sequence_data(torch.Generator().manual_seed(0))
    gpt_loss(model, batch, dtype).backward()
    gpt_loss(eager, batch, dtype).backward()
    return policy, model, compiler, eager, batch


def test_first_step_gradients_match_eager_torch_within_the_formats_tolerance(first_step):
    policy, model, _, eager, _ = first_step
    for (name, param), reference in zip(model.named_parameters(), eager.parameters(), strict=True):
        assert param.grad is not None and param.grad.dtype == torch.float32, name
        error = (param.grad - reference.grad).abs().max() / reference.grad.abs().max()
        assert error <= GRAD_TOLERANCE[policy], f"{policy} {name}: relative error {error:.2e}"


def test_graphs_carry_the_policys_gemm_dtype_and_report_what_ran(first_step):
    policy, _, compiler, _, _ = first_step
    reports = compiler.placement()
    assert [r["kind"] for r in reports] == ["forward", "backward"]
    for report in reports:
        assert report["provider"] == CPU and report["share_on_provider"] == 1.0 and report["fallback_ops"] == {}
        assert report["source"] == "onnxruntime profile of the first run"
        ran = {dtype for counts in report["gemm_dtypes"].values() for dtype in counts}
        assert ran == {"float32"}  # the CPU EP computes every GEMM here in fp32 (fp16/bf16 ones are upcast)
    declared = {dtype for counts in reports[0]["gemm_dtypes_in_graph"].values() for dtype in counts}
    assert GRAPH_DTYPE[policy] in declared
    assert "attention (MultiheadAttention)" in reports[0]["modules"]
    assert "aten.native_layer_norm_backward" in reports[1]["decomposed_ops"]
    assert f"on {CPU}" in summary_line(reports[0])


@pytest.mark.parametrize("first_step", ["fp32", "fp16-mixed"], indirect=True)
def test_fp32_and_fp16_graphs_need_no_upcast_of_mpxs(first_step):
    _, _, compiler, _, _ = first_step
    assert all(report["upcast_ops"] == {} for report in compiler.placement())  # fp16: onnxruntime's own Casts


@pytest.mark.parametrize("first_step", ["bf16-mixed"], indirect=True)
def test_bf16_ops_the_cpu_ep_lacks_are_upcast_and_named_with_the_reason(first_step):
    _, _, compiler, _, _ = first_step
    forward = compiler.placement()[0]
    assert {"MatMul", "Gemm"} & set(forward["upcast_ops"])
    reason = forward["upcast_ops"].get("MatMul") or forward["upcast_ops"]["Gemm"]
    assert "has no bfloat16 kernel" in reason and CPU in reason
    assert "upcast:" in summary_line(forward)


@pytest.mark.parametrize("first_step", ["fp32"], indirect=True)
def test_tiny_gpt_trains_through_the_compiled_graphs(first_step):
    _, model, compiler, _, batch = first_step
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = gpt_loss(model, batch, None)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert len(compiler.graphs) == 2  # no recompiles for a fixed shape
    assert all(g.calls >= 30 for g in compiler.graphs)


@torch.library.custom_op("mpx_test::twist", mutates_args=())
def twist(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) * x


@twist.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def _save_input(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])


def _twist_backward(ctx, grad: torch.Tensor) -> torch.Tensor:
    (x,) = ctx.saved_tensors
    return grad * (torch.cos(x) * x + torch.sin(x))


twist.register_autograd(_twist_backward, setup_context=_save_input)


class Twister(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return twist(x)


class WithTwist(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear, self.twister = torch.nn.Linear(4, 4), Twister()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.twister(self.linear(x))


def test_an_op_the_exporter_cannot_take_is_an_mpx_error_naming_op_and_module():
    model = compile_model(WithTwist(), OrtCompiler(target(CPU)))
    with pytest.raises(OpError) as raised:
        model(torch.randn(2, 4))
    message = str(raised.value)
    assert "mpx_test.twist" in message and "twister (Twister)" in message
    assert "torch.compiler.disable" in message  # the fix
