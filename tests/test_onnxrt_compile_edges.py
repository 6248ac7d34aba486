"""Real-world edges of the onnxrt compile backend: graph breaks, new shapes, dropout, eval/train, SDPA,
gradient accumulation and clipping through MixedPrecision, and the backend hooks' defaults."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("onnxruntime", reason="needs the onnxrt extra (pip install mpx-precision[onnxrt])")
pytest.importorskip("onnxscript", reason="needs the onnxrt extra (pip install mpx-precision[onnxrt])")

import mpx  # noqa: E402
from mpx.backends.onnxrt.providers import CPU, target  # noqa: E402
from mpx.backends.onnxrt.training import OrtCompiler, compile_model  # noqa: E402


class Net(nn.Module):
    def __init__(self, dropout: float = 0.0, graph_break: bool = False) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(8, 32), nn.Linear(32, 1)
        self.dropout, self.graph_break = nn.Dropout(dropout), graph_break

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.gelu(self.first(x)))
        if self.graph_break:
            torch._dynamo.graph_break()
        return self.second(h)


class CausalAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.out = nn.Linear(16, 48), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 2, 8).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(attended.transpose(1, 2).reshape(x.shape[0], x.shape[1], 16))


def compiled_twin(model: nn.Module) -> tuple[nn.Module, OrtCompiler]:
    compiler = OrtCompiler(target(CPU))
    return compile_model(copy.deepcopy(model), compiler), compiler


def assert_same_gradients(model: nn.Module, reference: nn.Module, tolerance: float = 1e-5) -> None:
    for (name, param), expected in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(param.grad, expected.grad, rtol=tolerance, atol=tolerance), name


def test_torch_nn_containers_are_compiled_too():
    torch.manual_seed(0)
    eager = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 1))
    model, compiler = compiled_twin(eager)
    x = torch.randn(16, 8)
    model(x).square().mean().backward()
    eager(x).square().mean().backward()
    assert_same_gradients(model, eager)
    assert [r["kind"] for r in compiler.placement()] == ["forward", "backward"]


def test_a_graph_break_gives_several_graphs_with_eager_gradients():
    torch.manual_seed(0)
    eager = Net(graph_break=True)
    model, compiler = compiled_twin(eager)
    x = torch.randn(16, 8)
    model(x).square().mean().backward()
    eager(x).square().mean().backward()
    assert_same_gradients(model, eager)
    kinds = [(r["graph"], r["kind"]) for r in compiler.placement()]
    assert len(compiler.captures) == 2 and sum(kind == "forward" for _, kind in kinds) == 2, kinds


def test_a_new_input_shape_is_a_new_capture_and_the_report_shows_its_shapes():
    torch.manual_seed(0)
    eager = Net()
    model, compiler = compiled_twin(eager)
    with torch.no_grad():
        for batch in (8, 5, 8):
            x = torch.randn(batch, 8)
            torch.testing.assert_close(model(x), eager(x), rtol=1e-5, atol=1e-5)
    assert len(compiler.captures) == 2  # 8 again reuses the first graph
    shapes = [report["input_shapes"] for report in compiler.placement()]
    assert any([8, 8] in s for s in shapes) and any([5, 8] in s for s in shapes)


def test_calls_past_the_recompile_limit_are_reported_as_eager(monkeypatch):
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    torch.manual_seed(0)
    eager = Net()
    model, compiler = compiled_twin(eager)
    with torch.no_grad():
        for batch in (8, 5, 5):
            x = torch.randn(batch, 8)
            torch.testing.assert_close(model(x), eager(x), rtol=1e-5, atol=1e-5)
    reports = compiler.placement()
    assert len(compiler.captures) == 1 and reports[-1]["kind"] == "eager" and reports[-1]["runs"] == 2
    assert "recompile_limit (1)" in reports[-1]["reason"]


def test_each_model_of_a_class_has_its_own_graphs_and_recompile_budget(monkeypatch):
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    for _ in range(2):  # dynamo keeps graphs per code object: without mpx's own copy the second would run eagerly
        model, compiler = compiled_twin(Net())
        with torch.no_grad():
            model(x)
        assert len(compiler.captures) == 1 and compiler.eager_calls == 0


def test_train_mode_dropout_draws_fresh_masks_and_the_model_still_trains():
    torch.manual_seed(0)
    model, _ = compiled_twin(Net(dropout=0.5))
    x = torch.randn(64, 8)
    y = x[:, :1] * 2 - x[:, 1:2]
    first, second = model(x), model(x)
    assert not torch.equal(first, second)  # a mask per call (onnxruntime's generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5])


def test_eval_mode_is_deterministic_and_matches_eager_after_training_mode():
    torch.manual_seed(0)
    eager = Net(dropout=0.5)
    model, compiler = compiled_twin(eager)
    x = torch.randn(16, 8)
    model(x).sum().backward()  # train mode first
    model.eval()
    eager.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
        assert torch.equal(first, second)
        torch.testing.assert_close(first, eager(x), rtol=1e-5, atol=1e-5)
    assert len(compiler.captures) == 2  # eval() is its own graph (no dropout in it)
    model.train()
    assert not torch.equal(model(x), model(x))


def test_sdpa_runs_its_backward_through_the_math_path():
    torch.manual_seed(0)
    eager = CausalAttention()
    model, compiler = compiled_twin(eager)
    x = torch.randn(4, 6, 16)
    model(x).square().mean().backward()
    eager(x).square().mean().backward()
    assert_same_gradients(model, eager, 1e-5)
    assert {r["kind"] for r in compiler.placement()} == {"forward", "backward"}


def test_gradient_accumulation_and_clipping_through_mixed_precision_match_eager():
    torch.manual_seed(0)
    eager = Net()
    model = copy.deepcopy(eager)
    trainer = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), "onnxrt", "fp32")
    reference_optimizer = torch.optim.SGD(eager.parameters(), lr=0.1)
    batches = [(torch.randn(16, 8), torch.randn(16, 1)) for _ in range(2)]
    for x, y in batches:  # two micro-batches, one step
        trainer.backward(F.mse_loss(trainer.model(x), y) / 2)
        (F.mse_loss(eager(x), y) / 2).backward()
    norm = trainer.clip_grad_norm_(0.05)
    expected_norm = torch.nn.utils.clip_grad_norm_(eager.parameters(), 0.05)
    torch.testing.assert_close(norm.reshape(()), expected_norm, rtol=1e-5, atol=1e-6)
    trainer.step()
    reference_optimizer.step()
    for param, expected in zip(model.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(param, expected, rtol=1e-5, atol=1e-6)
    reports = trainer.placement()
    assert {"forward 0", "backward 0"} <= {r["graph"] for r in reports}
    assert all(r["provider"] == CPU for r in reports)


def test_backends_that_run_torch_code_leave_the_model_alone_and_report_no_graphs():
    model = Net()
    trainer = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), "cpu", "fp32")
    assert trainer.model is model and "forward" not in vars(model)
    assert trainer.placement() == []


@pytest.mark.parametrize("make", [lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1)), Net])
def test_models_past_dynamos_recompile_limit_still_run_on_the_ep(make) -> None:
    """Each model compiles its own frame: a container's forward is compiled through one shared dynamo wrapper,
    whose recompile limit the ninth nn.Sequential of a process used to hit (then it ran eagerly, silently)."""
    with torch._dynamo.config.patch(recompile_limit=2):
        for _ in range(4):
            model = make()
            compile_model(model, OrtCompiler(target(CPU)))
            model(torch.randn(2, 8 if isinstance(model, Net) else 4))
            assert model._mpx_ort_compiler.eager_calls == 0
            assert model._mpx_ort_compiler.forward_runs() == 1
