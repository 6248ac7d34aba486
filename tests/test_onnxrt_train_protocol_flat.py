"""The onnxrt protocol keeps AdamW's moments and step counts as pieces of flat buffers and lays masters and
gradients end to end per step: what torch and the user see stays torch's (the same parameter storage, state
objects and keys, state_dict), and whatever replaces, changes or leaves out those tensors is followed, bit for
bit with the graph per tensor."""

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


def _grads(params, step: int, without=()) -> dict[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return {p: torch.randn(p.shape, generator=generator) for i, p in enumerate(params) if i not in without}


def _per_tensor(monkeypatch) -> None:
    """The graph per tensor: no flat buffers at all."""
    from mpx.backends.onnxrt.training import protocol_flat

    monkeypatch.setattr(protocol_flat, "same_step", lambda states, params: False)


def _run(backend, steps: int, between=None, without=lambda step: ()):
    """AdamW masked steps (the third skipped); `between(step, params, optimizer)` may meddle before each step,
    `without(step)` names the parameters that have no gradient in it."""
    params = _params()
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    for step in range(steps):
        if between is not None:
            params, optimizer = between(step, params, optimizer)
        grads = _grads(params, step, without(step))
        backend.masked_step(optimizer, grads, torch.tensor(step == 2), FP32_STATE)
    return params, optimizer


def _assert_same(got, want) -> None:
    (got_params, got_optimizer), (want_params, want_optimizer) = got, want
    assert all(_same_bits(a, b) for a, b in zip(got_params, want_params, strict=True))
    for a, b in zip(got_params, want_params, strict=True):
        got_state, want_state = got_optimizer.state[a], want_optimizer.state[b]
        assert list(got_state) == list(want_state) == ["step", "exp_avg", "exp_avg_sq"]
        assert all(_same_bits(got_state[key], want_state[key]) for key in got_state)


def test_state_lives_in_flat_buffers_and_parameters_keep_their_storage(onnxrt):
    params = _params()
    addresses, aliases = [p.data_ptr() for p in params], [p.detach() for p in params]
    shared = torch.zeros(3).share_memory_()
    optimizer = torch.optim.AdamW([*params, shared], lr=1e-2)
    for step in range(4):
        grads = {**_grads(params, step), shared: torch.ones(3)}
        onnxrt.masked_step(optimizer, grads, torch.tensor(step == 2), FP32_STATE)
    assert [p.data_ptr() for p in params] == addresses
    assert all(torch.equal(alias, p) for alias, p in zip(aliases, params, strict=True))
    assert shared.is_shared() and float(shared[0]) != 0.0  # another process would still see the updates
    (flats,) = onnxrt.protocol._flat_buffers[optimizer].values()
    base = flats["exp_avg"].flat.data_ptr()
    assert [optimizer.state[p]["exp_avg"].data_ptr() - base for p in params] == [0, 128 * 4, 136 * 4]
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)["state"]
    assert [state[i]["exp_avg"].shape for i in range(3)] == [p.shape for p in params]
    assert all(float(state[i]["step"]) == 3.0 for i in range(4))  # 4 steps, one skipped


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
    (flats,) = onnxrt.protocol._flat_buffers[got[1]].values()  # the rebuilt optimizer's, adopted afresh
    assert flats["exp_avg"].holds([got[1].state[p]["exp_avg"] for p in got[0]])
    _per_tensor(monkeypatch)
    _assert_same(got, _run(mpx.get_backend("onnxrt"), steps=6, between=meddle))


def test_a_parameter_without_gradient_on_some_steps_keeps_its_own_step_count(onnxrt, monkeypatch):
    """Steps where one parameter has no gradient (an unused branch) leave the group's step counts unequal: the
    group then steps tensor by tensor, with each tensor's own bias correction."""

    def without(step):
        return (0, 2) if step in (3, 4) else ()  # only parameter 1 steps then: its count runs ahead

    got = _run(onnxrt, steps=7, without=without)
    assert [float(got[1].state[p]["step"]) for p in got[0]] == [4.0, 6.0, 4.0]
    _per_tensor(monkeypatch)
    _assert_same(got, _run(mpx.get_backend("onnxrt"), steps=7, without=without))


def test_freezing_part_of_the_model_lets_the_old_buffers_go(onnxrt):
    params = _params()
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for step in range(2):
        onnxrt.masked_step(optimizer, _grads(params, step), torch.tensor(False), FP32_STATE)
    for step in range(2, 4):  # parameter 2 frozen: the other two are laid out again
        onnxrt.masked_step(optimizer, _grads(params, step, without=(2,)), torch.tensor(False), FP32_STATE)
    (flats,) = onnxrt.protocol._flat_buffers[optimizer].values()
    frozen = optimizer.state[params[2]]["exp_avg"]
    assert frozen.untyped_storage().data_ptr() != flats["exp_avg"].flat.untyped_storage().data_ptr()
    assert frozen.untyped_storage().nbytes() == frozen.numel() * 4  # its own storage, not the old buffer


@pytest.mark.parametrize("policy", ["fp32", "fp16-mixed"])
@pytest.mark.parametrize("clip", ["clip_grad_norm_", "grad.data.clamp_"])
def test_gradients_changed_between_unscale_and_step_are_the_ones_stepped(policy, clip, monkeypatch):
    """Clipping between unscale_ and step (through the gradient or its .data): the update reads the changed
    gradients, bit for bit as the graph per tensor does."""

    def train():
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
            if clip == "clip_grad_norm_":
                mp.clip_grad_norm_(0.05)  # small enough to clip every step
            else:
                mp.unscale_()
                for group in optimizer.param_groups:
                    for master in group["params"]:
                        master.grad.data.clamp_(-1e-3, 1e-3)
            assert not mp.step().was_skipped
        return [p.detach().clone() for p in model.parameters()]

    flat = train()
    _per_tensor(monkeypatch)
    assert all(_same_bits(a, b) for a, b in zip(flat, train(), strict=True))


@pytest.mark.parametrize("policy", ["fp32", "fp16-mixed"])
def test_the_fused_check_and_update_graph_steps_as_the_two_graphs_do(policy, monkeypatch):
    """step() without an unscale_() before it runs check (+ unscale) and AdamW as one graph: the same bits as
    the two graphs, an injected inf included (the step skipped, masters and moments unchanged)."""
    from mpx.plugins.backend import TrainingBackend

    def train(fused: bool):
        if not fused:
            monkeypatch.setattr(type(mpx.get_backend("onnxrt")), "fused_unscale_and_step",
                                TrainingBackend.fused_unscale_and_step)  # fmt: skip
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        mp = mpx.MixedPrecision(model, optimizer, backend=mpx.get_backend("onnxrt"), policy=policy)
        generator, skipped = torch.Generator().manual_seed(1), []
        for step in range(5):
            x, y = torch.randn(32, 8, generator=generator), torch.randn(32, 1, generator=generator)
            mp.zero_grad()
            with mp.autocast():
                out = mp.model(x)
            mp.backward(mpx.mse_loss(out, y))
            if step == 2:
                model[0].weight.grad.view(-1)[3] = float("inf")
            skipped.append(mp.step().was_skipped)
        state = [t.clone() for s in optimizer.state.values() for t in s.values()]
        return [p.detach().clone() for p in model.parameters()] + state, skipped, mp._stepped

    fused, fused_skips, fused_ran = train(True)
    plain, plain_skips, plain_fused = train(False)
    assert fused_skips == plain_skips == [False, False, True, False, False]
    assert fused_ran and not plain_fused  # the last step: one graph, and two graphs
    assert all(_same_bits(a, b) for a, b in zip(fused, plain, strict=True))
