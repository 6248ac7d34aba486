"""The trainer runs the backend's training protocol, and the precision ops' conformance cases run the same methods."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest
import torch
from typing_extensions import override

import mpx
from mpx.backends.cpu.backend import CpuBackend
from mpx.formats import FP16, FP32
from mpx.ops import get_op
from mpx.ops.reference import prepare
from mpx.training.state_formats import StateFormats


class CountingCpu(CpuBackend):
    """A CpuBackend that counts protocol calls and, when `bump` is set, adds it to every stepped master."""

    def __init__(self, bump: float = 0.0) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.bump = bump

    @override
    def unscale_and_check_(
        self,
        grads: list[torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None = None,
    ) -> torch.Tensor:
        self.calls["unscale_and_check_"] += 1
        return super().unscale_and_check_(grads, found_inf, inv_scale, saturation_limit)

    @override
    def masked_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: dict[torch.Tensor, torch.Tensor],
        skip: torch.Tensor,
        state_formats: StateFormats | None = None,
    ) -> None:
        self.calls["masked_step"] += 1
        super().masked_step(optimizer, grads, skip, state_formats)
        with torch.no_grad():
            for master in grads:
                master.add_(self.bump)

    @override
    def cast_back(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.calls["cast_back"] += 1
        super().cast_back(pairs)


def _model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(dtype)


def _train_step(mp: mpx.MixedPrecision, model: torch.nn.Module) -> None:
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    with mp.autocast():
        out = model(x.to(next(model.parameters()).dtype))
    mp.backward(mpx.mse_loss(out, y))
    mp.step()


def test_trainer_step_calls_only_the_backend_protocol() -> None:
    backend = CountingCpu()
    model = _model(torch.float16)
    mp = mpx.MixedPrecision(model, torch.optim.AdamW(model.parameters(), lr=1e-3), backend, "fp16-pure")
    _train_step(mp, model)
    assert backend.calls == Counter({"unscale_and_check_": 1, "masked_step": 1, "cast_back": 1})


@pytest.mark.parametrize(
    ("op_name", "method"),
    [
        ("unscale", "unscale_and_check_"),
        ("nonfinite_check", "unscale_and_check_"),
        ("sgd_master_update", "masked_step"),
        ("adam_master_update", "masked_step"),
        ("cast_back", "cast_back"),
    ],
)
def test_precision_op_conformance_runs_the_same_protocol_method(op_name: str, method: str) -> None:
    backend = CountingCpu()
    op = get_op(op_name)
    backend.run(op, FP16, prepare(op, FP16, "normal", "forward", 0).storage_inputs)
    assert backend.calls[method] == 1


def test_a_changed_master_update_changes_both_training_and_the_conformance_op() -> None:
    """One override, seen by MixedPrecision.step and by backend.run(adam_master_update) alike."""
    op = get_op("adam_master_update")
    inputs = prepare(op, FP16, "normal", "forward", 0).storage_inputs
    plain, bumped = CpuBackend().run(op, FP16, inputs)[0], CountingCpu(bump=1.0).run(op, FP16, inputs)[0]
    assert torch.equal(bumped, plain + 1.0)
    trained = []
    for backend in (CpuBackend(), CountingCpu(bump=1.0)):
        model = _model()
        mp = mpx.MixedPrecision(model, torch.optim.AdamW(model.parameters(), lr=1e-3), backend, "fp32")
        _train_step(mp, model)
        trained.append(model[0].bias.detach().clone())
    torch.testing.assert_close(trained[1], trained[0] + 1.0)


def test_saturating_cpu_backend_casts_masters_back_with_saturation() -> None:
    backend = CpuBackend(overflow="saturate")
    param = torch.zeros(2, dtype=torch.float16)
    backend.cast_back([(param, torch.tensor([1e6, -1e6]))])
    assert param.tolist() == [FP16.max, -FP16.max]
    CpuBackend().cast_back([(param, torch.tensor([1e6, 1.0]))])
    assert param[0].isinf() and param[1] == 1.0


def test_protocol_defaults_work_on_a_bare_training_backend() -> None:
    """A vendor TrainingBackend with no overrides trains through the torch defaults."""

    class Bare(mpx.TrainingBackend):
        name = "bare"

    model = _model()
    before = model[0].weight.detach().clone()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), Bare(), "fp32")
    _train_step(mp, model)
    assert not torch.equal(model[0].weight, before) and mp.policy.params == FP32
