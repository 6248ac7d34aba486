"""fp32 master weights, masked optimizer updates, optimizer-state formats and bytes per parameter."""

import pytest
import torch

import mpx


def _model(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).to(dtype)


def _train(mp, model, steps=5, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 8, generator=generator)
        mp.zero_grad()
        with mp.autocast():
            out = model(x.to(next(model.parameters()).dtype))
        mp.backward(mpx.mse_loss(out, torch.zeros_like(out)))
        mp.step()


def _step_alongside(mp, ours, reference, theirs, steps=5):
    """`steps` steps of mp on `ours` and of the plain torch optimizer `reference` on `theirs`, same batches."""
    generator = torch.Generator().manual_seed(3)
    for _ in range(steps):
        x = torch.randn(16, 8, generator=generator)
        for model in (ours, theirs):
            model.zero_grad()
            model(x).square().mean().backward()
        mp.step()
        reference.step()


def test_half_model_gets_fp32_masters_in_the_optimizer():
    model = _model(torch.float16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mp = mpx.MixedPrecision(model, optimizer, policy="fp16-mixed")
    stepped = [p for g in optimizer.param_groups for p in g["params"]]
    assert all(p.dtype == torch.float32 for p in stepped)
    assert all(torch.equal(m.half(), p) for m, p in zip(mp.master_weights.masters, model.parameters(), strict=True))


def test_pure_policy_casts_the_model_and_keeps_masters():
    model = _model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="bf16-pure")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert len(mp.master_weights.masters) == 4


def test_parameters_are_masters_rounded_to_nearest_even():
    model = _model(torch.float16)
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="fp16-pure")
    _train(mp, model)
    fp16 = mpx.format("fp16")
    for master, param in zip(mp.master_weights.masters, model.parameters(), strict=True):
        assert torch.equal(fp16.round(master), param.float())


def test_masters_keep_updates_smaller_than_half_an_fp16_ulp():
    model = torch.nn.Linear(1, 1, bias=False).half()
    with torch.no_grad():
        model.weight.fill_(1.0)
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1.0), policy="fp16-pure", loss_scale="none")
    for _ in range(8):
        model.weight.grad = torch.full_like(model.weight, 2.0**-13)  # a quarter ulp of 1.0 in fp16
        mp.step()
    assert float(mp.master_weights.masters[0]) == 1.0 - 8 * 2.0**-13
    assert float(model.weight.detach()) == 1.0 - 2.0**-10


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.01),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True),
    ],
)
def test_masked_update_matches_torch_optimizer_without_overflow(make):
    ours, theirs = _model(), _model()
    mp = mpx.MixedPrecision(ours, make(ours.parameters()), policy="fp32")
    _step_alongside(mp, ours, make(theirs.parameters()), theirs)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_any_optimizer_works_through_the_generic_masked_step():
    model = _model(torch.float16)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=1e-2)
    mp = mpx.MixedPrecision(model, optimizer, policy="fp16-mixed")
    before = [p.clone() for p in model.parameters()]
    _train(mp, model)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_state_formats_store_adam_first_moment_in_bf16():
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mp = mpx.MixedPrecision(model, optimizer, policy="bf16-mixed", state_formats=mpx.LEAN_ADAM)
    _train(mp, model, steps=2)
    state = next(iter(optimizer.state.values()))
    assert state["exp_avg"].dtype == torch.bfloat16 and state["exp_avg_sq"].dtype == torch.float32


def test_bytes_per_parameter_fp32_adam_is_16():
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mp = mpx.MixedPrecision(model, optimizer, policy="fp32")
    _train(mp, model, steps=1)
    assert mpx.bytes_per_parameter(model, optimizer, mp) == pytest.approx(16.0, abs=0.1)


def test_bytes_per_parameter_lean_recipe_is_12():
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mp = mpx.MixedPrecision(model, optimizer, policy="bf16-mixed", state_formats=mpx.LEAN_ADAM)
    _train(mp, model, steps=1)
    assert all(p.grad is None for p in model.parameters())  # gradients live in bf16 buffers
    assert mpx.bytes_per_parameter(model, optimizer, mp) == pytest.approx(12.0, abs=0.1)


def test_bytes_per_parameter_classic_fp16_masters_is_16():
    model = _model(torch.float16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mp = mpx.MixedPrecision(model, optimizer, policy="fp16-pure")
    _train(mp, model, steps=1)
    assert mpx.bytes_per_parameter(model, optimizer, mp) == pytest.approx(16.0, abs=0.1)


def test_lean_gradients_accumulate_like_fp32_ones_within_bf16():
    model, reference = _model(), _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    mp = mpx.MixedPrecision(model, optimizer, policy="fp32", state_formats=mpx.state_formats(grads="bf16"))
    ref_mp = mpx.MixedPrecision(reference, torch.optim.SGD(reference.parameters(), lr=0.1), policy="fp32")
    _train(mp, model, steps=3)
    _train(ref_mp, reference, steps=3)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-3)


def test_state_formats_reject_unknown_keys_and_fp8():
    with pytest.raises(mpx.ScalingError, match="exp_avg"):
        mpx.state_formats(momentum="bf16")
    with pytest.raises(mpx.ScalingError, match="fp8"):
        mpx.state_formats(grads="fp8_e4m3")


def test_without_masters_those_updates_are_lost():
    model = torch.nn.Linear(1, 1, bias=False).half()
    with torch.no_grad():
        model.weight.fill_(1.0)
    mp = mpx.MixedPrecision(
        model, torch.optim.SGD(model.parameters(), lr=1.0), policy="fp16-pure", loss_scale="none", master_weights=False
    )
    for _ in range(8):
        model.weight.grad = torch.full_like(model.weight, 2.0**-13)
        mp.step()
    assert float(model.weight.detach()) == 1.0


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW])
def test_fused_adam_uses_torch_found_inf_and_skips_bit_identically(optimizer):
    model = _model(torch.float16)
    opt = optimizer(model.parameters(), lr=1e-2, fused=True)
    mp = mpx.MixedPrecision(model, opt, policy="fp16-mixed")
    _train(mp, model, steps=2)
    masters = [m.clone() for m in mp.master_weights.masters]
    state = {k: v.clone() for k, v in next(iter(opt.state.values())).items()}
    mp.zero_grad()
    with mp.autocast():
        out = model(torch.randn(4, 8).half())
    mp.backward(mpx.mse_loss(out, torch.zeros_like(out)))
    next(model.parameters()).grad.view(-1)[0] = float("inf")
    assert mp.step().was_skipped
    assert all(torch.equal(a, b) for a, b in zip(masters, mp.master_weights.masters, strict=True))
    assert all(torch.equal(v, next(iter(opt.state.values()))[k]) for k, v in state.items())
    assert not hasattr(opt, "found_inf")


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.01),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, maximize=True),
    ],
)
def test_masked_update_with_bf16_first_moment_tracks_torch_optimizer(make):
    ours, theirs = _model(), _model()
    formats = mpx.state_formats(exp_avg="bf16")
    mp = mpx.MixedPrecision(ours, make(ours.parameters()), policy="fp32", state_formats=formats)
    _step_alongside(mp, ours, make(theirs.parameters()), theirs)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
        assert not torch.equal(a, b)  # bf16 moments really were used
