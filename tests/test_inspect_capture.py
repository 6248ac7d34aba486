"""MixedPrecision(inspect=...) records a step's forward inside its autocast() without hooks: only the watched
modules of that model, only on recorded steps, and outside the context the model is exactly as it was."""

import copy
import gc
import pickle
import weakref

import pytest
import torch
from inspect_helpers import tiny_gradient_model

import mpx


def _shadowed(model):
    """The modules carrying an instance `forward` or a forward hook."""
    return [name for name, m in model.named_modules() if "forward" in m.__dict__ or m._forward_hooks]


def _step(mp, model, x, y, inside=None):
    mp.zero_grad()
    with mp.autocast():
        if inside is not None:
            inside()
        out = model(x)
    mp.backward(mpx.mse_loss(out, y))
    mp.step()


def test_a_recorded_steps_forward_is_captured_in_autocast_only_and_other_models_are_left_alone():
    model, x, y, _ = tiny_gradient_model()
    other = torch.nn.Linear(32, 3)
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1e-3), "cpu", "bf16-mixed",
                            inspect={"every": 2})  # fmt: skip
    inside, outside = [], []
    for _ in range(4):
        outside.append(_shadowed(model) + _shadowed(other))
        _step(mp, model, x, y, inside=lambda: (inside.append(_shadowed(model)), other(x)))
    leaves = [name for name, m in model.named_modules() if not list(m.children())]
    assert outside == [[], [], [], []]
    assert inside == [leaves, [], leaves, []]  # shadowed for steps 0 and 2 only, and only inside the context
    data = mp.inspection.data()
    assert data["recorded_steps"] == [0, 2]
    assert {t["module"] for t in data["tensors"]} == set(leaves)  # `other` ran in the step and is not in it
    assert all(t["count"] > 0 for t in data["tensors"] if t["kind"] == "output")


def test_between_steps_the_model_deep_copies_and_pickles_as_itself():
    model, x, y, _ = tiny_gradient_model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1e-3), "cpu", "bf16-mixed",
                            inspect=True)  # fmt: skip
    _step(mp, model, x, y)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[0].weight.zero_()  # a copy that ran the original's forward would not see this
        assert not torch.equal(twin(x), model(x))
    restored = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


def test_a_forward_that_raises_leaves_no_shadow_and_the_next_step_records():
    model, x, y, _ = tiny_gradient_model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1e-3), "cpu", "bf16-mixed",
                            inspect=True)  # fmt: skip
    with pytest.raises(RuntimeError), mp.autocast():
        model(torch.randn(4, 5))  # the wrong width: the first Linear raises
    assert _shadowed(model) == []
    _step(mp, model, x, y)
    assert mp.inspection.data()["recorded_steps"] == [0]


def test_a_forward_set_on_the_instance_is_called_under_capture_and_put_back():
    model, x, y, _ = tiny_gradient_model()
    head = model[4]
    plain = head.forward
    calls = []

    def counted(*args):  # what libraries that wrap a module's forward (accelerate's hooks) set
        calls.append(1)
        return plain(*args)

    head.forward = counted
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1e-3), "cpu", "bf16-mixed",
                            inspect=True)  # fmt: skip
    _step(mp, model, x, y)
    assert calls == [1] and head.__dict__["forward"] is counted
    assert any(t["module"] == "4" and t["kind"] == "output" and t["count"] for t in mp.inspection.data()["tensors"])


def test_nested_autocast_records_each_call_once():
    model, x, y, _ = tiny_gradient_model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1e-3), "cpu", "bf16-mixed",
                            inspect=True)  # fmt: skip
    mp.zero_grad()
    with mp.autocast(), mp.autocast():
        out = model(x)
    mp.backward(mpx.mse_loss(out, y))
    mp.step()
    output = next(t for t in mp.inspection.data()["tensors"] if t["module"] == "0" and t["kind"] == "output")
    assert output["count"] == x.shape[0] * 64


def test_a_dropped_trainer_goes_with_its_recorder():
    model, x, y, _ = tiny_gradient_model()
    mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1e-3), "cpu", "bf16-mixed",
                            inspect={"every": 2})  # fmt: skip
    _step(mp, model, x, y)
    recorder = weakref.ref(mp.inspection.recorder)
    del mp
    gc.collect()
    assert recorder() is None and _shadowed(model) == []
