"""policy='fp32' is plain torch, bit for bit, for every optimizer and its foreach/fused kernels; skips are exact."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

import mpx

Make = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]

OPTIMIZERS: dict[str, Make] = {
    **{
        f"{kind.__name__}-{variant}": (
            lambda p, kind=kind, flags=flags, extra=extra: kind(p, lr=1e-2, **extra, **flags)
        )
        for kind, extra in (
            (torch.optim.SGD, {"momentum": 0.9, "weight_decay": 1e-4}),
            (torch.optim.Adam, {"weight_decay": 1e-4}),
            (torch.optim.AdamW, {"weight_decay": 0.1}),
        )
        for variant, flags in (
            ("default", {}),
            ("foreach", {"foreach": True}),
            ("fused", {"fused": True}),
        )
    },
    "SGD-plain": lambda p: torch.optim.SGD(p, lr=1e-2),
    "SGD-nesterov": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
    "Adam-amsgrad": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
    "RMSprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5),
    "Adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
    "NAdam": lambda p: torch.optim.NAdam(p, lr=1e-2),
    "Adamax": lambda p: torch.optim.Adamax(p, lr=1e-2),
}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 2))


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(32, 6, generator=generator), torch.randn(32, 2, generator=generator)


def _assert_bit_identical(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fp32_policy_is_plain_torch_bit_for_bit_after_50_steps(name: str) -> None:
    make = OPTIMIZERS[name]
    ours, theirs = _model(), _model()
    mp = mpx.MixedPrecision(ours, make(list(ours.parameters())), "cpu", "fp32")
    plain = make(list(theirs.parameters()))
    for step in range(50):
        x, y = _batch(step)
        mp.zero_grad()
        with mp.autocast():
            out = ours(x)
        mp.backward(mpx.mse_loss(out, y))
        assert not mp.step().was_skipped
        plain.zero_grad()
        mpx.mse_loss(theirs(x), y).backward()
        plain.step()
    _assert_bit_identical(ours, theirs)


@pytest.mark.parametrize("name", ["SGD-default", "Adam-default", "AdamW-foreach", "AdamW-fused", "RMSprop"])
def test_skipped_steps_change_no_bit_and_the_others_stay_plain_torch(name: str) -> None:
    """Overflow on steps 3 and 7: those are skipped (state and step counts included), the rest match torch."""
    make = OPTIMIZERS[name]
    ours, theirs = _model(), _model()
    optimizer = make(list(ours.parameters()))
    mp = mpx.MixedPrecision(ours, optimizer, "cpu", "fp32")
    plain = make(list(theirs.parameters()))
    for step in range(12):
        x, y = _batch(step)
        mp.zero_grad()
        mp.backward(mpx.mse_loss(ours(x), y))
        overflow = step in (3, 7)
        if overflow:
            next(ours.parameters()).grad.view(-1)[0] = math.nan
        before = {
            id(p): {k: v.clone() for k, v in s.items() if isinstance(v, torch.Tensor)}
            for p, s in optimizer.state.items()
        }
        params = [p.detach().clone() for p in ours.parameters()]
        assert mp.step().was_skipped == overflow
        if overflow:
            assert all(torch.equal(a, b) for a, b in zip(params, ours.parameters(), strict=True))
            for param, state in optimizer.state.items():
                for key, value in before.get(id(param), {}).items():
                    assert torch.equal(state[key], value), key
            continue
        plain.zero_grad()
        mpx.mse_loss(theirs(x), y).backward()
        plain.step()
        _assert_bit_identical(ours, theirs)


def test_lean_adam_state_format_still_keeps_its_bf16_moment() -> None:
    """Reduced-precision state is the one case mpx updates itself (torch's kernels would do bf16 arithmetic)."""
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mp = mpx.MixedPrecision(model, optimizer, "cpu", "bf16-mixed", state_formats=mpx.LEAN_ADAM)
    for step in range(3):
        with mp.autocast():
            out = model(_batch(step)[0])
        mp.backward(mpx.mse_loss(out, _batch(step)[1]))
        mp.step()
    state = next(iter(optimizer.state.values()))
    assert state["exp_avg"].dtype == torch.bfloat16 and state["exp_avg_sq"].dtype == torch.float32
    assert mpx.bytes_per_parameter(model, optimizer, mp) == pytest.approx(12.0, abs=0.1)
