"""The onnxrt protocol keeps masters, AdamW moments and step counts as pieces of flat buffers and reuses the
unscaled gradients' flat array: what torch and the user see stays torch's (the same parameter objects,
state keys, state_dict), and anything that replaces or changes those tensors is picked up, bit for bit."""

from __future__ import annotations

import io

import pytest
import torch

import mpx
from mpx.training.state_formats import FP32_STATE


@pytest.fixture()
def onnxrt():
    return mpx.get_backend("onnxrt")


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.contiguous().view(torch.int32), b.contiguous().view(torch.int32))


def _params() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return [torch.randn(shape, generator=generator) for shape in ((16, 8), (8,), (4, 3, 2))]


def _grads(params, step: int) -> dict[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return {p: torch.randn(p.shape, generator=generator) for p in params}


def _run(backend, steps: int, between=None, per_tensor: bool = False, monkeypatch=None):
    """AdamW masked steps on fixed gradients; `between(step, params, optimizer)` may meddle before each step."""
    if per_tensor:  # the graph per tensor: no flat buffers at all
        from mpx.backends.onnxrt.training import protocol

        monkeypatch.setattr(protocol, "same_step", lambda states, params: False)
    params = _params()
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    for step in range(steps):
        if between is not None:
            params, optimizer = between(step, params, optimizer)
        backend.masked_step(optimizer, _grads(params, step), torch.tensor(step == 2), FP32_STATE)
    return params, optimizer


def _assert_same(got, want) -> None:
    (got_params, got_optimizer), (want_params, want_optimizer) = got, want
    assert all(_same_bits(a, b) for a, b in zip(got_params, want_params, strict=True))
    for a, b in zip(got_params, want_params, strict=True):
        got_state, want_state = got_optimizer.state[a], want_optimizer.state[b]
        assert list(got_state) == list(want_state) == ["step", "exp_avg", "exp_avg_sq"]
        assert all(_same_bits(got_state[key], want_state[key]) for key in got_state)


def test_flat_buffers_keep_torchs_tensors_and_state_dict(onnxrt):
    params, optimizer = _run(onnxrt, steps=4)
    (flats,) = onnxrt.protocol._flat_buffers[optimizer].values()
    base = flats["master"].flat.data_ptr()
    assert [p.data_ptr() - base for p in params] == [0, 128 * 4, 136 * 4]  # pieces of one buffer, in order
    assert optimizer.param_groups[0]["params"] == params  # the same objects the optimizer was given
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)["state"]
    assert [state[i]["exp_avg"].shape for i in range(3)] == [p.shape for p in params]
    assert all(float(state[i]["step"]) == 3.0 for i in range(3))  # 4 steps, one skipped


def test_a_loaded_state_dict_and_replaced_data_are_adopted_again(onnxrt, monkeypatch):
    """Halfway, the optimizer is rebuilt from its state_dict and one parameter's data replaced: the steps go
    on from those tensors, as the graph per tensor computes them."""

    def meddle(step, params, optimizer):
        if step == 3:
            fresh = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
            fresh.load_state_dict(optimizer.state_dict())
            params[1].data = params[1].data.clone()
            return params, fresh
        return params, optimizer

    got = _run(onnxrt, steps=6, between=meddle)
    want = _run(mpx.get_backend("onnxrt"), steps=6, between=meddle, per_tensor=True, monkeypatch=monkeypatch)
    _assert_same(got, want)
    (flats,) = onnxrt.protocol._flat_buffers[got[1]].values()  # the rebuilt optimizer's, adopted afresh
    assert flats["master"].holds(got[0]) and flats["exp_avg"].holds([got[1].state[p]["exp_avg"] for p in got[0]])


@pytest.mark.parametrize("policy", ["fp32", "fp16-mixed"])
def test_gradients_clipped_between_unscale_and_step_are_the_ones_stepped(policy, monkeypatch):
    """clip_grad_norm_ changes the unscaled gradients in place: the update reads them, not the array the
    unscale produced (a run that flattens the gradients afresh every step gives the same bits)."""
    from mpx.backends.onnxrt.training.protocol_flat import UnscaledGradients, flatten

    def train(fresh_flatten: bool):
        if fresh_flatten:
            monkeypatch.setattr(UnscaledGradients, "flat", lambda self, grads: flatten(grads))
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        mp = mpx.MixedPrecision(model, optimizer, backend=mpx.get_backend("onnxrt"), policy=policy)
        generator = torch.Generator().manual_seed(1)
        for _ in range(4):
            x, y = torch.randn(32, 8, generator=generator), torch.randn(32, 1, generator=generator)
            mp.zero_grad()
            with mp.autocast():
                out = mp.model(x)
            mp.backward(mpx.mse_loss(out, y))
            mp.clip_grad_norm_(0.05)  # small enough to clip every step
            assert not mp.step().was_skipped
        return [p.detach().clone() for p in model.parameters()]

    clipped, recomputed = train(False), train(True)
    assert all(_same_bits(a, b) for a, b in zip(clipped, recomputed, strict=True))
