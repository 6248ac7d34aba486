"""On the CPU, mpx runs torch's foreach step where it is bit-identical to the single-tensor one torch picks."""

from __future__ import annotations

import importlib

import pytest
import torch

import mpx
from mpx.training.optimizer_step import FOREACH_BIT_IDENTICAL

ADAM_MODULE = importlib.import_module("torch.optim.adam")

SETTINGS = {
    torch.optim.SGD: [{"lr": 1e-2}, {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}],
    torch.optim.Adam: [{}, {"weight_decay": 0.1, "amsgrad": True}, {"maximize": True}],
    torch.optim.AdamW: [{}, {"weight_decay": 0.5}],
    torch.optim.RMSprop: [{}, {"momentum": 0.5, "centered": True}],
    torch.optim.Adagrad: [{}, {"lr_decay": 1e-3, "weight_decay": 1e-2}],
    torch.optim.Adamax: [{}],
    torch.optim.Adadelta: [{}, {"weight_decay": 1e-2}],
}


def _trajectory(kind: type, foreach: bool | None, settings: dict) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [torch.randn(shape, requires_grad=True) for shape in ((257, 65), (65,), (3, 257), (1,))]
    optimizer = kind(params, foreach=foreach, **settings)
    generator = torch.Generator().manual_seed(1)
    for step in range(50):
        for p in params:  # gradients over five decades, as training sees them
            p.grad = torch.randn(p.shape, generator=generator) * 10.0 ** (step % 5 - 2)
        optimizer.step()
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return [p.detach() for p in params] + state


@pytest.mark.parametrize(
    ("kind", "settings"), [(kind, settings) for kind in FOREACH_BIT_IDENTICAL for settings in SETTINGS[kind]]
)
def test_foreach_step_is_bit_identical_to_single_tensor_on_cpu(kind: type, settings: dict) -> None:
    single, foreach = _trajectory(kind, None, settings), _trajectory(kind, True, settings)
    assert len(single) == len(foreach)
    for a, b in zip(single, foreach, strict=True):
        assert torch.equal(a, b), f"{kind.__name__} {settings}: foreach differs from the single-tensor step"


def test_the_listed_optimizers_cover_the_table() -> None:
    assert set(SETTINGS) == set(FOREACH_BIT_IDENTICAL)


def test_nadam_is_left_to_torch_because_its_foreach_step_rounds_differently() -> None:
    single, foreach = _trajectory(torch.optim.NAdam, None, {}), _trajectory(torch.optim.NAdam, True, {})
    assert any(not torch.equal(a, b) for a, b in zip(single, foreach, strict=True))
    assert torch.optim.NAdam not in FOREACH_BIT_IDENTICAL


def _trainer(foreach: bool | None) -> tuple[torch.nn.Module, mpx.MixedPrecision]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, foreach=foreach)
    return model, mpx.MixedPrecision(model, optimizer, "cpu", "fp32")


def _train(model: torch.nn.Module, mp: mpx.MixedPrecision) -> None:
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 8, generator=generator), torch.randn(16, 1, generator=generator)
    mp.zero_grad()
    with mp.autocast():
        out = model(x)
    mp.backward(torch.nn.functional.mse_loss(out, y))
    mp.step()


def test_trainer_runs_the_foreach_kernel_and_leaves_the_group_setting_as_the_user_left_it(monkeypatch) -> None:
    calls = []
    multi = ADAM_MODULE._multi_tensor_adam
    monkeypatch.setattr(ADAM_MODULE, "_multi_tensor_adam", lambda *a, **k: calls.append(1) or multi(*a, **k))
    model, mp = _trainer(None)
    _train(model, mp)
    assert calls == [1]
    assert mp.optimizer.param_groups[0]["foreach"] is None
    assert mp.optimizer.state_dict()["param_groups"][0]["foreach"] is None


def test_an_explicit_foreach_false_keeps_the_single_tensor_step(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(ADAM_MODULE, "_multi_tensor_adam", lambda *a, **k: calls.append(1))
    model, mp = _trainer(False)
    _train(model, mp)
    assert calls == []
    assert mp.optimizer.param_groups[0]["foreach"] is False
