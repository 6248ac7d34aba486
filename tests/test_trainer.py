"""mpx.MixedPrecision: the step protocol, no host sync, accumulation, clipping, skips, schedulers, errors."""

import logging
import math

import pytest
import torch
from trainer_helpers import _backward, _batch, _model, _poison

import mpx


def test_step_result_is_a_device_flag_read_only_on_request():
    model = _model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="fp16-mixed")
    _backward(mp, model, *_batch())
    result = mp.step()
    assert isinstance(result.skipped, torch.Tensor) and result.skipped.dtype == torch.bool
    assert result.was_skipped is False
    assert float(result.scale) == 2.0**16


def test_overflow_skips_the_step_and_backs_off():
    model = _model()
    mp = mpx.MixedPrecision(model, torch.optim.Adam(model.parameters(), lr=0.1), policy="fp16-mixed")
    before = [p.clone() for p in model.parameters()]
    _backward(mp, model, *_batch())
    _poison(model)
    result = mp.step()
    assert result.was_skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert float(mp.scaler.loss_scale) == 2.0**15
    assert int(mp.skipped_steps) == 1


def test_skipped_steps_counts_every_skip():
    model = _model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="fp16-mixed")
    for step in range(5):
        mp.zero_grad()
        _backward(mp, model, *_batch(step))
        if step % 2 == 0:
            _poison(model)
        mp.step()
    assert int(mp.skipped_steps) == 3


def test_gradient_accumulation_over_micro_batches_equals_one_big_batch():
    x, y = _batch(n=64)
    whole, split = _model(), _model()
    mp_whole = mpx.MixedPrecision(whole, torch.optim.SGD(whole.parameters(), lr=0.1), policy="fp32")
    mp_split = mpx.MixedPrecision(split, torch.optim.SGD(split.parameters(), lr=0.1), policy="fp32")
    _backward(mp_whole, whole, x, y)
    for part in range(2):
        with mp_split.autocast():
            out = split(x[part * 32 : (part + 1) * 32])
        mp_split.backward(mpx.mse_loss(out, y[part * 32 : (part + 1) * 32]) / 2)
    mp_whole.step()
    mp_split.step()
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_clipping_acts_on_unscaled_gradients():
    model, reference = _model(), _model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1.0), policy="fp32", loss_scale=1024.0)
    x, y = _batch()
    _backward(mp, model, x, y)
    norm = mp.clip_grad_norm_(0.01)
    mpx.mse_loss(reference(x), y).backward()
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.01)
    torch.testing.assert_close(norm, expected, rtol=1e-5, atol=0)
    mp.step()
    torch.optim.SGD(reference.parameters(), lr=1.0).step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_scheduler_does_not_advance_on_a_skipped_step():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    mp = mpx.MixedPrecision(model, optimizer, policy="fp16-mixed")
    _backward(mp, model, *_batch())
    _poison(model)
    mp.step()
    assert mp.scheduler_step(scheduler) is False
    assert optimizer.param_groups[0]["lr"] == 1.0
    mp.zero_grad()
    _backward(mp, model, *_batch())
    mp.step()
    assert mp.scheduler_step(scheduler) is True
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_bf16_defaults_to_no_loss_scaling_with_a_note(caplog):
    model = _model()
    with caplog.at_level(logging.INFO, logger="mpx"):
        mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="bf16-mixed")
    assert isinstance(mp.scaler, mpx.NoOpLossScaler)
    assert "without loss scaling" in caplog.text


def test_fp16_defaults_to_dynamic_loss_scaling():
    model = _model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="fp16-mixed")
    assert isinstance(mp.scaler, mpx.DynamicLossScaler)


def test_saturating_backend_overflow_is_detected():
    backend = mpx.get_backend("cpu", overflow="saturate")
    model = _model()
    mp = mpx.MixedPrecision(
        model, torch.optim.SGD(model.parameters(), lr=0.1), backend=backend, policy="fp16-mixed", loss_scale=2.0**40
    )
    _backward(mp, model, *_batch())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())  # clamped, not inf
    assert mp.step().was_skipped


def test_state_dict_round_trip_restores_scaler_masters_and_optimizer():
    model = _model(torch.float16)
    mp = mpx.MixedPrecision(model, torch.optim.Adam(model.parameters(), lr=1e-2), policy="fp16-pure")
    _backward(mp, model, *_batch())
    mp.step()
    state = mp.state_dict()
    other_model = _model(torch.float16)
    other = mpx.MixedPrecision(other_model, torch.optim.Adam(other_model.parameters(), lr=1e-2), policy="fp16-pure")
    other.load_state_dict(state)
    assert other.scaler.state_dict() == mp.scaler.state_dict()
    assert all(torch.equal(a, b) for a, b in zip(other.master_weights.masters, mp.master_weights.masters, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(other_model.parameters(), model.parameters(), strict=True))
    assert other.optimizer.state_dict()["state"][0]["step"] == 1


def _snapshot(model, optimizer):
    return [p.detach().clone() for p in model.parameters()], [
        p.dtype for g in optimizer.param_groups for p in g["params"]
    ]


def _unchanged(model, optimizer, snapshot):
    params, dtypes = snapshot
    now = _snapshot(model, optimizer)
    return (
        all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(params, now[0], strict=True)) and dtypes == now[1]
    )


def test_model_without_float_parameters_is_refused():
    model = torch.nn.Embedding(4, 2)
    model.weight = torch.nn.Parameter(torch.zeros(4, 2, dtype=torch.int64), requires_grad=False)
    with pytest.raises(mpx.ScalingError, match="floating-point parameters"):
        mpx.MixedPrecision(model, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))


def test_optimizer_without_parameters_is_refused():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.param_groups[0]["params"] = []
    with pytest.raises(mpx.ScalingError, match="no parameters"):
        mpx.MixedPrecision(model, optimizer)


@pytest.mark.parametrize("scale", [0.0, -2.0, math.nan])
def test_bad_loss_scale_is_refused_and_changes_nothing(scale):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    snapshot = _snapshot(model, optimizer)
    with pytest.raises(mpx.ScalingError, match="scale"):
        mpx.MixedPrecision(model, optimizer, policy="fp16-pure", loss_scale=scale)
    assert _unchanged(model, optimizer, snapshot)


def test_policy_the_backend_cannot_run_is_refused_and_changes_nothing():
    model = _model()
    optimizer = torch.optim.Adam(model.parameters())
    snapshot = _snapshot(model, optimizer)
    with pytest.raises(mpx.PolicyError, match="fp8"):
        mpx.MixedPrecision(model, optimizer, backend=mpx.get_backend("cpu", native=True), policy="fp8-hybrid")
    assert _unchanged(model, optimizer, snapshot)


def test_fp16_gradients_reaching_an_fp32_only_path_are_refused():
    model = _model(torch.float16)
    optimizer = torch.optim.RMSprop(model.parameters())
    snapshot = _snapshot(model, optimizer)
    with pytest.raises(mpx.ScalingError, match="fp32"):
        mpx.MixedPrecision(model, optimizer, policy="fp16-pure", master_weights=False)
    assert _unchanged(model, optimizer, snapshot)


def test_unknown_backend_name_is_an_mpx_error():
    model = _model()
    with pytest.raises(mpx.BackendNotFoundError):
        mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), backend="cpuu")
