"""The trainer's call order (issue 16, point 5): backward -> unscale_/clip -> step, like torch.amp's OptState."""

import pytest
import torch

import mpx


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(dtype)


def _trainer(model, policy="fp16-mixed", loss_scale=2.0**10):
    return mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy=policy, loss_scale=loss_scale)


def _loss(mp, model, seed):
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 8, generator=generator), torch.randn(16, 1, generator=generator)
    with mp.autocast():
        out = model(x.to(next(model.parameters()).dtype))
    return mpx.mse_loss(out, y)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _same(before, model):
    return all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("first", ["unscale_", "clip_grad_norm_"])
def test_backward_after_unscale_or_clip_raises_and_changes_no_gradient(first):
    model = _model()
    mp = _trainer(model)
    mp.backward(_loss(mp, model, 0))
    mp.unscale_() if first == "unscale_" else mp.clip_grad_norm_(1e9)
    grads = [p.grad.clone() for p in model.parameters()]
    with pytest.raises(mpx.TrainingInputError, match=r"call step\(\)"):
        mp.backward(_loss(mp, model, 1))
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters(), strict=True))


def test_the_refused_backward_leaves_a_step_equal_to_one_backward():
    """Before: the second backward's unscale divided the first gradients by the scale twice (0.5x at scale 2)."""
    model, reference = _model(), _model()
    mp, ref = _trainer(model, loss_scale=2.0), _trainer(reference, loss_scale=2.0)
    mp.backward(_loss(mp, model, 0))
    mp.unscale_()
    with pytest.raises(mpx.TrainingInputError):
        mp.backward(_loss(mp, model, 1))
    mp.step()
    ref.backward(_loss(ref, reference, 0))
    ref.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))


def test_accumulation_then_clip_then_step_works_and_matches_one_big_loss():
    model, reference = _model(), _model()
    mp, ref = _trainer(model), _trainer(reference)
    for seed in (0, 1, 2):
        mp.backward(_loss(mp, model, seed))
    ref.backward(sum(_loss(ref, reference, seed) for seed in (0, 1, 2)))
    mp.clip_grad_norm_(0.05)
    ref.clip_grad_norm_(0.05)
    assert not mp.step().was_skipped
    ref.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), reference.parameters(), strict=True))


def test_unscale_then_step_unscales_once():
    model, reference = _model(), _model()
    mp, ref = _trainer(model), _trainer(reference)
    mp.backward(_loss(mp, model, 0))
    found_inf = mp.unscale_()
    assert mp.unscale_() is found_inf  # a second unscale_ in the same step is a no-op
    mp.step()
    ref.backward(_loss(ref, reference, 0))
    ref.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))


def test_step_without_any_backward_raises_and_changes_nothing():
    model = _model()
    mp = _trainer(model)
    before, scale = _params(model), mp.scaler.state_dict()
    with pytest.raises(mpx.TrainingInputError, match=r"backward\(\)|backward\(loss\)"):
        mp.step()
    assert _same(before, model)
    assert int(mp.skipped_steps) == 0 and mp.scaler.state_dict() == scale
    with pytest.raises(mpx.TrainingInputError, match="backward"):
        mp.unscale_()


@pytest.mark.parametrize("dtype,policy", [(torch.float32, "fp16-mixed"), (torch.float16, "fp16-pure")])
def test_a_second_step_without_backward_raises(dtype, policy):
    """The gradients stay on fp32 parameters (and fp16 ones) after step(): stepping them again is refused."""
    model = _model(dtype)
    mp = _trainer(model, policy=policy)
    mp.backward(_loss(mp, model, 0))
    mp.step()
    before = _params(model)
    with pytest.raises(mpx.TrainingInputError, match="backward"):
        mp.step()
    assert _same(before, model)
    mp.backward(_loss(mp, model, 1))  # a new backward makes the next step legal again
    mp.step()
    assert not _same(before, model)


def test_step_after_zero_grad_raises():
    model = _model()
    mp = _trainer(model)
    mp.backward(_loss(mp, model, 0))
    mp.zero_grad()
    with pytest.raises(mpx.TrainingInputError, match="backward"):
        mp.step()


def test_zero_grad_resets_the_unscaled_state():
    model, reference = _model(), _model()
    mp, ref = _trainer(model), _trainer(reference)
    mp.backward(_loss(mp, model, 5))
    mp.unscale_()
    mp.zero_grad()
    mp.backward(_loss(mp, model, 0))  # legal again: the step starts over
    mp.step()
    ref.backward(_loss(ref, reference, 0))
    ref.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))


def test_a_plain_backward_without_scaling_still_steps():
    """With no loss scaling, gradients from loss.backward() are valid, and step() takes them as before."""
    model = _model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="fp32")
    before = _params(model)
    _loss(mp, model, 0).backward()
    assert not mp.step().was_skipped
    assert not _same(before, model)
    with pytest.raises(mpx.TrainingInputError, match="backward"):
        mp.step()


def test_the_stage_goes_back_to_ready_after_each_step():
    model = _model()
    mp = _trainer(model)
    for seed in range(3):
        mp.zero_grad()
        mp.backward(_loss(mp, model, seed))
        mp.clip_grad_norm_(1.0)
        mp.step()
        assert mp._order.stage is mpx.training.call_order.Stage.READY
