"""FP8 scaling recipes: per-tensor current scaling and TE-style delayed scaling with an amax history."""

import pytest
import torch

from mpx import ScalingError
from mpx.formats import FP8_E4M3, FP8_E5M2, FP16
from mpx.fp8 import CurrentScaling, DelayedScaling, TensorScaling, quantize, recipe_for_policy, scale_from_amax

ONE = torch.ones(())


def test_scale_is_fp8_max_over_amax_divided_by_two_to_the_margin():
    assert float(scale_from_amax(torch.tensor(2.0), 448.0, 0, ONE)) == 224.0
    assert float(scale_from_amax(torch.tensor(2.0), 448.0, 3, ONE)) == 28.0


@pytest.mark.parametrize("amax", [0.0, float("inf"), float("nan")])
def test_a_zero_or_non_finite_amax_keeps_the_previous_scale(amax):
    assert float(scale_from_amax(torch.tensor(amax), 448.0, 0, torch.tensor(7.0))) == 7.0


@pytest.mark.parametrize("amax", [1e-45, 1e-30, 3.4e38])
@pytest.mark.parametrize("margin", [0, 40])
def test_the_scale_is_never_inf_nan_or_zero(amax, margin):
    scale = scale_from_amax(torch.tensor(amax), 57344.0, margin, ONE)
    assert torch.isfinite(scale) and scale > 0


def test_current_scaling_uses_the_tensors_own_amax():
    state = TensorScaling(CurrentScaling(), FP8_E4M3)
    assert float(state.scale_for(torch.tensor([0.5, -4.0]))) == 112.0
    assert float(state.scale_for(torch.tensor([1.0]))) == 448.0


def test_delayed_scaling_uses_the_history_of_previous_steps():
    state = TensorScaling(DelayedScaling(amax_history_len=4), FP8_E4M3)
    assert float(state.scale_for(torch.tensor([2.0]))) == 224.0  # empty history: its own amax
    assert float(state.scale_for(torch.tensor([8.0]))) == 224.0  # scale from step 1 (amax 2)
    assert float(state.scale_for(torch.tensor([1.0]))) == 56.0  # max over steps 1-2 (amax 8)


def test_the_amax_history_rolls_and_forgets_after_its_length():
    state = TensorScaling(DelayedScaling(amax_history_len=2), FP8_E4M3)
    for amax in (16.0, 1.0, 1.0):
        state.scale_for(torch.tensor([amax]))
    assert float(state.scale_for(torch.tensor([1.0]))) == 448.0  # the 16 fell out of the 2-long window
    assert sorted(state.amax_history.tolist()) == [1.0, 1.0]


def test_most_recent_uses_only_the_previous_amax():
    state = TensorScaling(DelayedScaling(amax_history_len=8, amax_compute_algo="most_recent"), FP8_E4M3)
    for amax in (64.0, 2.0):
        state.scale_for(torch.tensor([amax]))
    assert float(state.scale_for(torch.tensor([1.0]))) == 224.0


def test_a_non_finite_amax_is_not_recorded():
    state = TensorScaling(DelayedScaling(amax_history_len=4), FP8_E5M2)
    state.scale_for(torch.tensor([2.0]))
    state.scale_for(torch.tensor([float("inf")]))
    assert float(state.scale_for(torch.tensor([1.0]))) == 57344.0 / 2.0


def test_quantize_saturates_finite_values_and_keeps_non_finite_ones():
    x = torch.tensor([1000.0, -1000.0, float("inf"), 0.3])
    e4m3 = quantize(x, ONE, FP8_E4M3, emulated=True)
    assert e4m3[:2].tolist() == [448.0, -448.0] and e4m3[2].isnan()
    assert quantize(x, ONE, FP8_E5M2, emulated=True)[2] == float("inf")


@pytest.mark.parametrize("fmt", [FP8_E4M3, FP8_E5M2])
def test_emulated_and_real_fp8_quantization_agree_bit_for_bit(fmt):
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 30
    x[:3] = torch.tensor([float("inf"), 1e9, 1e-9])
    scale = torch.tensor(3.0)
    emulated = quantize(x, scale, fmt, emulated=True)
    real = quantize(x, scale, fmt, emulated=False).float()
    assert torch.equal(emulated.nan_to_num(0.5), real.nan_to_num(0.5))


def test_the_fp8_hybrid_policy_gives_e4m3_forward_and_e5m2_backward():
    recipe = recipe_for_policy("fp8-hybrid", scaling="current")
    assert isinstance(recipe, CurrentScaling)
    assert (recipe.forward, recipe.backward) == (FP8_E4M3, FP8_E5M2)


def test_a_policy_without_fp8_has_no_recipe():
    with pytest.raises(ScalingError, match="does not compute in fp8"):
        recipe_for_policy("bf16-mixed")


@pytest.mark.parametrize(
    "options",
    [{"margin": -1}, {"amax_history_len": 0}, {"amax_compute_algo": "mean"}, {"forward": FP16}, {"gemm": "cublas"}],
)
def test_bad_recipe_options_are_refused(options):
    with pytest.raises(ScalingError):
        DelayedScaling(**options)
