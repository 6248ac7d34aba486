"""torch.compile under the emulated autocast: the same numbers as eager, or an mpx error; never silently different."""

import copy

import pytest
import torch
import torch.nn as nn

import mpx
from mpx.errors import PolicyError

FP16 = mpx.format("fp16")


class _SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


def _train(model: nn.Module, steps: int = 3) -> tuple[list[float], torch.Tensor]:
    torch.manual_seed(1)
    x, y = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        with mpx.get_backend("cpu").autocast("fp16-mixed"):
            out = model(x)
            loss = ((out - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, out.detach()


# aot_eager traces the whole TransformerEncoderLayer; inductor (a C++ compile per kernel, ~4x the time on a
# cold cache) compiles its self-attention block: in_proj, SDPA and out_proj, forward and backward.
@pytest.mark.parametrize(
    ("compiler", "make_model"),
    [
        ("aot_eager", lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)),
        ("inductor", _SelfAttention),
    ],
)
def test_compiled_training_matches_eager_under_emulated_fp16(compiler, make_model):
    torch.manual_seed(0)
    model = make_model()
    eager_losses, eager_out = _train(copy.deepcopy(model))
    torch._dynamo.reset()
    compiled_losses, compiled_out = _train(torch.compile(copy.deepcopy(model), backend=compiler))
    assert compiled_losses[-1] < compiled_losses[0]  # it learns
    ulps = (compiled_out - eager_out).abs() / FP16.ulp(eager_out)
    assert float(ulps.max()) <= 1.0
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)


def test_compiled_format_round_rounds():
    formats = [mpx.format(n) for n in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")]
    x = torch.cat([torch.randn(256) * 100, torch.randn(256) * 1e-6, torch.tensor([0.0, 1e6, -1e6, 2.0**-30])])

    def round_all(t: torch.Tensor) -> list[torch.Tensor]:
        return [f.round(t, overflow="saturate", subnormals="flush") for f in formats]

    torch._dynamo.reset()
    compiled = torch.compile(round_all, backend="inductor")(x)
    assert all(torch.equal(c, e) for c, e in zip(compiled, round_all(x), strict=True))


def test_graph_traced_under_one_policy_refuses_to_run_under_another():
    linear = nn.Linear(8, 8)
    compiled = torch.compile(linear, backend="aot_eager")
    torch._dynamo.reset()
    backend = mpx.get_backend("cpu")
    with backend.autocast("bf16-mixed"):
        compiled(torch.randn(2, 8))
    with backend.autocast("params=fp32,compute=bf16,output=fp32,grads=fp16"), pytest.raises(PolicyError):
        compiled(torch.randn(2, 8))


def test_compiled_model_outside_emulation_is_plain_fp32():
    linear = nn.Linear(8, 8)
    compiled = torch.compile(linear, backend="aot_eager")
    x = torch.randn(2, 8)
    with mpx.get_backend("cpu").autocast("fp16-mixed"):
        compiled(x)
    assert torch.equal(compiled(x), linear(x))
