"""keep_fp32 per-module overrides, and loss scaling chosen from the model's real dtypes."""

from __future__ import annotations

import logging

import pytest
import torch

import mpx
from mpx.backends.cpu.backend import CpuBackend


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(8, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.relu(self.body(x))))


def _head_io(mp: mpx.MixedPrecision, model: Net) -> tuple[torch.Tensor, torch.Tensor]:
    seen: list[torch.Tensor] = []
    handle = model.head.register_forward_hook(lambda m, args, out: seen.extend([args[0], out]))
    with mp.autocast():
        model(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)))
    handle.remove()
    return seen[0], seen[1]


BACKENDS = {"emulated": lambda: CpuBackend(), "native": lambda: CpuBackend(native=True)}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("policy", ["bf16-mixed", "fp16-mixed", "bf16-pure"])
def test_a_kept_module_runs_in_fp32_exactly(backend: str, policy: str) -> None:
    model = Net()
    mp = mpx.MixedPrecision(
        model, torch.optim.SGD(model.parameters(), lr=0.1), BACKENDS[backend](), policy, keep_fp32=["norm", "head"]
    )
    head_input, head_output = _head_io(mp, model)
    assert head_input.dtype == torch.float32 and model.head.weight.dtype == torch.float32
    assert torch.equal(head_output, torch.nn.functional.linear(head_input, model.head.weight, model.head.bias))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_without_the_override_the_same_module_is_rounded(backend: str) -> None:
    model = Net()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), BACKENDS[backend](), "bf16-mixed")
    head_input, head_output = _head_io(mp, model)
    exact = torch.nn.functional.linear(head_input.float(), model.head.weight, model.head.bias)
    assert not torch.equal(head_output.float(), exact)


def test_module_types_keep_every_instance_and_its_parameters_fp32_under_a_pure_policy() -> None:
    model = Net()
    mpx.MixedPrecision(
        model, torch.optim.SGD(model.parameters(), lr=0.1), "cpu", "bf16-pure", keep_fp32=[torch.nn.LayerNorm]
    )
    assert model.norm.weight.dtype == torch.float32 and model.body.weight.dtype == torch.bfloat16


def test_kept_modules_train_and_leave_autocast_on_after_them() -> None:
    model = Net()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), "cpu", "fp16-mixed", keep_fp32=["norm"])
    with mp.autocast():
        out = model(torch.randn(4, 8))
        assert torch.is_autocast_enabled("cpu")
    mp.backward(out.float().square().mean())
    assert not mp.step().was_skipped


def test_unknown_module_name_is_an_mpx_error_naming_close_matches() -> None:
    model = Net()
    with pytest.raises(mpx.MpxError, match="close matches: head"):
        mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), keep_fp32=["haed"])


def test_a_module_type_the_model_lacks_is_an_mpx_error() -> None:
    model = Net()
    with pytest.raises(mpx.MpxError, match="no Conv2d"):
        mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), keep_fp32=[torch.nn.Conv2d])


@pytest.mark.parametrize("policy", ["bf16-mixed", "fp32"])
def test_half_model_under_a_params_fp32_policy_gets_dynamic_scaling_and_a_warning(
    policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Gradients of fp16 parameters underflow without scaling: the default follows the real dtype, and says so."""
    model = Net().half()
    with caplog.at_level(logging.WARNING, logger="mpx"):
        mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), "cpu", policy)
    assert isinstance(mp.scaler, mpx.DynamicLossScaler)
    assert policy in caplog.text and "float16" in caplog.text
    with mp.autocast():
        out = model(torch.randn(4, 8).half())
    mp.backward(out.float().mean() * 1e-6)  # a small loss: unscaled, its fp16 gradients would flush to zero
    grads = list(mp._sources().values())
    assert all(g.abs().sum() > 0 for g in grads)


def test_bf16_model_under_bf16_mixed_needs_no_scaling() -> None:
    model = Net().bfloat16()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), "cpu", "bf16-mixed")
    assert isinstance(mp.scaler, mpx.NoOpLossScaler)
