"""MixedPrecision(inspect=...) records a step's forward inside its autocast() without forward hooks (capture.py):
only the watched modules of that model, only recorded steps, and outside the context every class is as it was.
Copies, replicas and stored forwards made meanwhile run as themselves; failures leave nothing behind."""

import contextlib
import copy
import gc
import inspect
import pickle
import weakref

import pytest
import torch
from inspect_helpers import tiny_gradient_model

import mpx
from mpx.inspection import capture

PLAIN_LINEAR = torch.nn.Linear.forward


def _shadowed(model):
    """The modules of `model` with a forward of their own on the instance (a Shadow, or what it left)."""
    return [name for name, m in model.named_modules() if "forward" in m.__dict__]


def _trainer(model, every=1):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    return mpx.MixedPrecision(model, optimizer, "cpu", "bf16-mixed", inspect={"every": every})


def _step(mp, model, x, y, inside=None):
    mp.zero_grad()
    with mp.autocast():
        if inside is not None:
            inside()
        out = model(x)
    mp.backward(mpx.mse_loss(out, y))
    mp.step()


def _count(mp, module, kind="output"):
    return next((t["count"] for t in mp.inspection.data()["tensors"] if t["module"] == module and t["kind"] == kind), 0)


def test_a_recorded_steps_forward_is_captured_in_autocast_only_and_other_models_are_left_alone():
    model, x, y, _ = tiny_gradient_model()
    other = torch.nn.Linear(32, 3)
    mp = _trainer(model, every=2)
    inside, outside = [], []
    for _ in range(4):
        outside.append(_shadowed(model) + _shadowed(other))
        _step(mp, model, x, y, inside=lambda: (inside.append(len(_shadowed(model))), other(x)))
    assert outside == [[]] * 4 and torch.nn.Linear.forward is PLAIN_LINEAR
    assert inside == [5, 0, 5, 0]  # the five leaves, on steps 0 and 2 only
    data = mp.inspection.data()
    leaves = [name for name, m in model.named_modules() if not list(m.children())]
    assert data["recorded_steps"] == [0, 2]
    assert {t["module"] for t in data["tensors"]} == set(leaves)  # `other` ran in the step and is not in it
    assert _count(mp, "0") == 2 * x.shape[0] * 64


def test_copies_and_pickles_made_inside_the_context_run_as_themselves():
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model)
    copies = []
    _step(mp, model, x, y, inside=lambda: copies.append((copy.deepcopy(model), pickle.dumps(model))))
    twin, pickled = copies[0][0], pickle.loads(copies[0][1])
    with torch.no_grad():
        twin[0].weight.zero_()
        twin[0].bias.zero_()
        assert torch.equal(twin[0](x), torch.zeros(x.shape[0], 64))  # its own weights, not the original's
        layer = pickled[0]
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=0, atol=0)
    for layer in (twin[0], pickled[0]):  # the plain forward, bound to the copy
        assert not isinstance(layer.forward, capture.Shadow) and layer.forward.__self__ is layer
    assert _count(mp, "0") == x.shape[0] * 64  # the copy's calls were not noted


def test_a_forward_kept_from_a_recorded_step_passes_through_afterwards():
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model, every=100)
    kept = []
    _step(mp, model, x, y, inside=lambda: kept.append(model[0].forward))
    assert inspect.signature(kept[0]) == inspect.signature(PLAIN_LINEAR.__get__(model[0]))
    _step(mp, model, x, y, inside=lambda: kept[0](x))
    kept[0](x)
    assert mp.inspection.data()["recorded_steps"] == [0] and _count(mp, "0") == x.shape[0] * 64
    pickle.dumps(model)


def test_a_loop_inside_one_autocast_still_records_every_nth_step():
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model, every=4)
    with mp.autocast():
        for _ in range(8):
            mp.zero_grad()
            mp.backward(mpx.mse_loss(model(x), y))
            mp.step()
    assert _shadowed(model) == []
    assert mp.inspection.data()["recorded_steps"] == [0, 4]
    assert _count(mp, "0") == 2 * x.shape[0] * 64


def test_two_trainers_on_one_model_closing_out_of_order_put_every_class_back():
    model, x, y, _ = tiny_gradient_model()
    first, second = _trainer(model), _trainer(model)
    # the captures alone: autocast contexts themselves must close in order (each restores the state it found)
    a, b = (mp.inspection.recorder.capture(contextlib.nullcontext()) for mp in (first, second))
    a.__enter__()
    b.__enter__()
    model(x)
    a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    assert _shadowed(model) == [] and torch.nn.Linear.forward is PLAIN_LINEAR
    assert len(first.inspection.recorder._calls) == len(second.inspection.recorder._calls) == 5


def test_a_module_calling_itself_is_noted_once_per_call():
    class Twice(torch.nn.Linear):
        def forward(self, x, again=True):
            return self.forward(super().forward(x), again=False) if again else super().forward(x)

    torch.manual_seed(0)
    model = torch.nn.Sequential(Twice(8, 8))
    mp = _trainer(model)
    x = torch.randn(4, 8)
    _step(mp, model, x, torch.randn(4, 8))
    assert _count(mp, "0") == 4 * 8 and _count(mp, "0", "input") == 4 * 8


def test_a_forward_that_raises_leaves_no_wrapper_and_nothing_to_measure():
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model)
    with pytest.raises(RuntimeError), mp.autocast():
        model[0](x * 1e6)  # noted, then the next call raises: the step's noted calls go with it
        model(torch.randn(4, 5))
    assert _shadowed(model) == [] and not mp.inspection.recorder._calls
    _step(mp, model, x, y)
    assert mp.inspection.data()["recorded_steps"] == [0] and _count(mp, "0") == x.shape[0] * 64


def test_many_forwards_in_one_recorded_step_are_measured_early_not_held():
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model)
    recorder = mp.inspection.recorder
    held = []
    with mp.autocast():  # 300 micro-batches in one recorded step
        for _ in range(300):
            model(x)
            held.append(len(recorder._calls))
        with torch.no_grad():
            model(x)  # an evaluation pass: not the step's training forward
    assert max(held) < capture.LIMIT and _count(mp, "0") == 300 * x.shape[0] * 64


def test_a_forward_set_on_the_instance_is_called_recorded_and_put_back():
    model, x, y, _ = tiny_gradient_model()
    head = model[4]
    plain = head.forward
    calls = []

    def counted(*args):  # what libraries that wrap a module's forward (accelerate's hooks) set
        calls.append(1)
        return plain(*args)

    head.forward = counted
    mp = _trainer(model)
    _step(mp, model, x, y)
    assert calls == [1] and head.__dict__["forward"] is counted
    assert _count(mp, "4") == x.shape[0]


def test_nested_autocast_records_each_call_once():
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model)
    mp.zero_grad()
    with mp.autocast(), mp.autocast():
        out = model(x)
    mp.backward(mpx.mse_loss(out, y))
    mp.step()
    assert _count(mp, "0") == x.shape[0] * 64


def test_a_closed_report_stops_the_trainer_recording():
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model)
    _step(mp, model, x, y)
    mp.inspection.close()
    _step(mp, model, x, y)
    assert mp.inspection.data()["recorded_steps"] == [0] and mp.inspection.data()["steps"] == 1


@pytest.mark.parametrize("steps", [0, 1])
def test_a_dropped_trainer_goes_at_once(steps):
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model, every=2)
    for _ in range(steps):
        _step(mp, model, x, y)
    recorder = weakref.ref(mp.inspection.recorder)
    del mp
    gc.collect()
    assert recorder() is None and _shadowed(model) == []


def test_a_recorded_forward_outside_autocast_is_reported_missing_not_silently_empty(tmp_path):
    model, x, y, _ = tiny_gradient_model()
    mp = _trainer(model, every=2)
    for _ in range(3):
        mp.zero_grad()
        out = model(x)  # no mp.autocast(): nothing captures it
        mp.backward(mpx.mse_loss(out, y))
        mp.step()
    data = mp.inspection.data()
    assert data["unmeasured"] == {"a recorded step's forward (not run inside mp.autocast())": 2}
    assert "not run inside mp.autocast()" in mp.inspection.save(tmp_path / "r.html").read_text()
    assert _count(mp, "0", "grad") > 0  # gradients and weights come from the trainer all the same


class _Residual(torch.nn.Module):
    """`out += ...` on a module's output before the next module reads it (a ResNet block's `out += identity`)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, x):
        out = self.a(x)
        out += 1000.0
        return self.b(out)


@pytest.mark.parametrize("trainer", [True, False])
def test_an_output_changed_in_place_later_is_left_out_and_named_not_measured_as_changed(trainer):
    torch.manual_seed(0)
    model, x = _Residual(), torch.randn(16, 8)
    if trainer:
        mp = _trainer(model)
        _step(mp, model, x, torch.randn(16, 8))
        report = mp.inspection
    else:
        with mpx.inspect(model) as report:
            model(x).sum().backward()
    data = report.data()
    measured = {(t["module"], t["kind"]): t for t in data["tensors"]}
    assert ("a", "output") not in measured  # its values as `a` made them are gone: not reported as a's
    assert measured[("b", "input")]["amax"] > 900  # what b read: after the addition
    assert data["unmeasured"] == {"a output: changed in place after the module ran (an op like `out += x`)": 1}


def test_data_parallel_is_refused_with_what_to_use_instead():
    model, _, _, _ = tiny_gradient_model()
    with pytest.raises(mpx.MpxError, match="DistributedDataParallel"):
        _trainer(torch.nn.DataParallel(model))
