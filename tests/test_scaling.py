"""Loss scalers: torch.amp.GradScaler's defaults and semantics, plus floor, ceiling and hysteresis."""

import math

import pytest
import torch

import mpx


def _update(scaler: mpx.DynamicLossScaler, overflow: bool) -> None:
    scaler.update(torch.tensor([1.0 if overflow else 0.0]))


def test_dynamic_defaults_match_grad_scaler():
    scaler, reference = mpx.DynamicLossScaler(), torch.amp.GradScaler("cpu")
    assert float(scaler.loss_scale) == reference.get_scale() == 2.0**16
    assert (scaler.growth_factor, scaler.backoff_factor, scaler.growth_interval) == (2.0, 0.5, 2000)


def test_scale_multiplies_the_loss_on_its_device():
    scaler = mpx.DynamicLossScaler(init_scale=8.0)
    assert torch.equal(scaler.scale(torch.tensor(1.5)), torch.tensor([12.0]))


def test_unscale_divides_in_place_and_reports_overflow():
    scaler = mpx.StaticLossScaler(4.0)
    finite, bad = torch.tensor([8.0, -4.0]), torch.tensor([1.0, math.inf])
    assert float(scaler.unscale_([finite])) == 0.0
    assert finite.tolist() == [2.0, -1.0]
    assert float(scaler.unscale_([finite, bad])) == 1.0


def test_overflow_halves_the_scale_and_resets_growth():
    scaler = mpx.DynamicLossScaler(init_scale=1024.0, growth_interval=3)
    _update(scaler, False)
    _update(scaler, True)
    assert float(scaler.loss_scale) == 512.0
    assert scaler.state_dict()["_growth_tracker"] == 0


def test_growth_after_interval_of_good_steps():
    scaler = mpx.DynamicLossScaler(init_scale=1024.0, growth_interval=3)
    for _ in range(3):
        _update(scaler, False)
    assert float(scaler.loss_scale) == 2048.0


def test_scale_cannot_collapse_below_min_scale():
    scaler = mpx.DynamicLossScaler(init_scale=4.0, min_scale=1.0)
    for _ in range(10):
        _update(scaler, True)
    assert float(scaler.loss_scale) == 1.0


def test_scale_cannot_run_away_above_max_scale():
    scaler = mpx.DynamicLossScaler(init_scale=2.0**23, max_scale=2.0**24, growth_interval=1)
    for _ in range(10):
        _update(scaler, False)
    assert float(scaler.loss_scale) == 2.0**24


def test_hysteresis_spends_overflows_before_backing_off():
    scaler = mpx.DynamicLossScaler(init_scale=1024.0, hysteresis=2, growth_interval=2)
    _update(scaler, True)
    assert float(scaler.loss_scale) == 1024.0
    _update(scaler, True)
    assert float(scaler.loss_scale) == 512.0
    _update(scaler, True)  # hysteresis is spent until the scale grows again
    assert float(scaler.loss_scale) == 256.0
    _update(scaler, False)
    _update(scaler, False)
    assert float(scaler.loss_scale) == 512.0
    _update(scaler, True)  # growth refilled it
    assert float(scaler.loss_scale) == 512.0


def test_noop_scaler_leaves_the_loss_alone_but_detects_overflow():
    scaler = mpx.NoOpLossScaler()
    loss = torch.tensor(3.0)
    assert scaler.scale(loss) is loss
    assert float(scaler.unscale_([torch.tensor([math.nan])])) == 1.0


def test_static_scaler_never_changes():
    scaler = mpx.StaticLossScaler(128.0)
    scaler.update(torch.tensor([1.0]))
    assert float(scaler.loss_scale) == 128.0


def test_saturation_counts_as_overflow():
    limit = mpx.format("fp16").max
    scaler = mpx.StaticLossScaler(2.0)
    assert float(scaler.unscale_([torch.tensor([limit, 1.0])])) == 0.0
    assert float(scaler.unscale_([torch.tensor([-limit, 1.0])], saturation_limit=limit)) == 1.0


def test_state_dict_has_grad_scaler_keys_and_loads_into_grad_scaler():
    scaler = mpx.DynamicLossScaler(init_scale=512.0, growth_interval=7)
    _update(scaler, False)
    reference = torch.amp.GradScaler("cpu")
    reference.load_state_dict(scaler.state_dict())
    assert reference.get_scale() == 512.0
    assert reference.get_growth_interval() == 7
    assert reference.state_dict()["_growth_tracker"] == 1


def test_loads_grad_scaler_state_dict():
    reference = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=5, backoff_factor=0.25)
    scaler = mpx.DynamicLossScaler()
    scaler.load_state_dict(reference.state_dict())
    state = scaler.state_dict()
    assert (state["scale"], state["growth_interval"], state["backoff_factor"]) == (256.0, 5, 0.25)


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, math.inf, "big", True])
def test_static_scale_must_be_positive_and_finite(scale):
    with pytest.raises(mpx.ScalingError, match="scale"):
        mpx.StaticLossScaler(scale)


@pytest.mark.parametrize(
    "options",
    [
        {"init_scale": 0.0},
        {"init_scale": math.nan},
        {"growth_factor": 1.0},
        {"backoff_factor": 1.5},
        {"growth_interval": 0},
        {"hysteresis": 0},
        {"min_scale": 8.0, "max_scale": 4.0, "init_scale": 4.0},
    ],
)
def test_dynamic_rejects_bad_configuration(options):
    with pytest.raises(mpx.ScalingError):
        mpx.DynamicLossScaler(**options)


def test_bad_state_dict_changes_nothing():
    scaler = mpx.DynamicLossScaler(init_scale=64.0)
    with pytest.raises(mpx.ScalingError):
        scaler.load_state_dict(
            {"scale": -1.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 10, "_growth_tracker": 0}
        )
    assert scaler.state_dict()["scale"] == 64.0


def test_fp16_gradients_cannot_be_unscaled_in_place():
    grad = torch.full((3,), 1e-3, dtype=torch.float16)
    with pytest.raises(mpx.ScalingError, match="fp32"):
        mpx.DynamicLossScaler().unscale_([grad])
    assert torch.equal(grad, torch.full((3,), 1e-3, dtype=torch.float16))


def test_seed_helpers():
    assert mpx.scale_gradients([1.0, 2.5], 4.0) == [4.0, 10.0]
    assert torch.equal(mpx.scale_gradients([torch.tensor([1.0])], 2.0)[0], torch.tensor([2.0]))
    assert not bool(mpx.has_overflow([torch.ones(2), 3.0]))
    assert bool(mpx.has_overflow([torch.ones(2), math.inf]))
    loss = mpx.mse_loss(torch.ones(2, dtype=torch.float16), torch.zeros(2, dtype=torch.bfloat16))
    assert loss.dtype == torch.float32 and float(loss) == 1.0
