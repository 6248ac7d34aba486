"""mpx.inspect and MixedPrecision(inspect=True): the layer that overflows, underflowing gradients and the loss
scale that fixes them, the parameter behind a skipped step, keep_fp32, every=N, JSON, errors, no host sync."""

import json

import pytest
import torch
from inspect_helpers import (
    overflowing_gradient_model,
    overflowing_model,
    tiny_gradient_model,
    train_mixed,
    train_plain,
)
from trainer_helpers import _HostReads

import mpx
from mpx.inspection import NonFinite


@pytest.fixture(scope="module")
def overflow_report():
    model = overflowing_model()
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 16, generator=generator), torch.randn(64, 4, generator=generator)
    with mpx.inspect(model) as report:
        train_plain(model, x, y)
    return report


def test_one_layer_past_65504_is_named_overflowing_in_fp16_and_fine_in_bf16(overflow_report):
    assert overflow_report.overflowing("fp16") == ["1"]
    assert overflow_report.overflowing("bf16") == []
    assert overflow_report.recommendations()["modules"]["1"]["format"] != "fp16"


def test_keep_fp32_list_is_accepted_by_mixed_precision_and_fixes_the_overflow(overflow_report):
    keep = overflow_report.keep_fp32("fp16")
    assert "1" in keep
    model = overflowing_model()
    x, y = torch.randn(64, 16), torch.randn(64, 4)
    plain = train_mixed(overflowing_model(), x, y, 2, inspect=True)
    assert plain.inspection.overflowing("fp16") == ["1"]  # under fp16 compute the layer's output is inf
    kept = train_mixed(model, x, y, 2, keep_fp32=keep, inspect=True)
    assert kept.inspection.overflowing("fp16") == ["1"] and int(kept.skipped_steps) == 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.fixture(scope="module")
def underflow_report():
    model, x, y, factor = tiny_gradient_model()
    with mpx.inspect(model) as report:
        train_plain(model, x, y, loss_factor=factor)
    return report


def test_gradient_underflow_per_layer_at_scale_one_and_at_the_recommended_scale(underflow_report):
    at_one = underflow_report.gradient_underflow("fp16", loss_scale=1.0)
    advice = underflow_report.recommendations()["loss_scale"]
    low, high = underflow_report.loss_scale_window()
    assert low <= advice["recommended"] <= high
    at_recommended = underflow_report.gradient_underflow("fp16", loss_scale=advice["recommended"])
    assert set(at_one) == {"0", "2", "4"} and max(at_one.values()) > 0.1
    assert max(at_recommended.values()) <= underflow_report.threshold
    assert underflow_report.underflowing("fp16", kinds=("grad",), loss_scale=1.0)
    assert underflow_report.underflowing("fp16", kinds=("grad",), loss_scale=advice["recommended"]) == []


def _zero_share(trainer):
    grads = [t for t in trainer.inspection.data()["tensors"] if t["kind"] == "grad"]
    return sum(t["zeros"] for t in grads) / sum(t["count"] for t in grads)


def test_training_in_the_recommended_window_loses_under_one_percent_of_gradients(underflow_report):
    model, x, y, factor = tiny_gradient_model()
    unscaled = train_mixed(model, x, y, 6, loss_factor=factor, loss_scale=1.0, inspect=True)
    model, x, y, factor = tiny_gradient_model()
    scaled = train_mixed(model, x, y, 6, loss_factor=factor, loss_scale=underflow_report.loss_scaler(), inspect=True)
    assert _zero_share(unscaled) > 0.1  # fp16's backward rounds them to zero
    assert _zero_share(scaled) < 0.01 and int(scaled.skipped_steps) == 0


def test_a_skipped_step_names_the_module_and_parameter_whose_gradient_went_inf():
    model, x, y = overflowing_gradient_model()
    trainer = train_mixed(model, x, y, 8, inspect=True)
    data = trainer.inspection.data()
    last_skipped = max(step for step, skipped in enumerate(data["skipped"]) if skipped)
    assert trainer.inspection.first_nonfinite() == NonFinite("2", "weight", last_skipped)
    infinite = {(t["module"], t["parameter"]) for t in data["tensors"] if t["kind"] == "grad" and t["inf"] + t["nan"]}
    assert ("0", "weight") not in infinite and ("2", "weight") in infinite


@pytest.mark.parametrize("accelerator_path", [False, True], ids=["host-flag", "device-norms"])
def test_a_skipped_step_between_recorded_ones_is_named_too(monkeypatch, accelerator_path):
    """On the CPU a clean step between recorded ones keeps no gradient norms (its overflow flag is host memory,
    read for free); a skipped one does, and the report names its culprit as an accelerator's norms would."""
    if accelerator_path:
        monkeypatch.setattr("mpx.training.optimizer_step.HOST_DEVICES", ())
    model, x, y = overflowing_gradient_model()
    trainer = train_mixed(model, x, y, 8, inspect={"every": 100})  # only step 0 is recorded
    data = trainer.inspection.data()
    skipped = [step for step, flag in enumerate(data["skipped"]) if flag]
    assert skipped and max(skipped) > 0
    assert trainer.inspection.first_nonfinite() == NonFinite("2", "weight", max(skipped))
    kept = [step for step, _, _ in trainer.inspection.recorder.buffers.norms]
    assert kept == (list(range(8)) if accelerator_path else skipped)


def test_every_n_records_statistics_on_every_nth_step_only():
    model, x, y, _ = tiny_gradient_model()
    trainer = train_mixed(model, x, y, 7, policy="bf16-mixed", inspect={"every": 3})
    data = trainer.inspection.data()
    assert data["recorded_steps"] == [0, 3, 6] and data["steps"] == 7 and len(data["loss_scale"]) == 7
    grad = next(t for t in data["tensors"] if t["kind"] == "grad")
    assert grad["count"] == 3 * model[0].weight.numel()


def test_a_plain_loop_and_an_inference_pass_are_steps_and_the_hooks_come_off():
    model = overflowing_model()
    with mpx.inspect(model, formats=("fp16",)) as report:
        train_plain(model, torch.randn(8, 16), torch.randn(8, 4), steps=2)
        with torch.no_grad():
            model(torch.randn(8, 16))
    assert report.data()["steps"] == 3
    assert not model._forward_hooks and not any(m._forward_hooks for m in model.modules())


def test_in_place_relu_does_not_change_what_the_previous_layer_recorded():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(inplace=True), torch.nn.Linear(64, 1))
    with mpx.inspect(model, formats=("fp16",)) as report:
        with torch.no_grad():
            model(torch.randn(32, 4))
    output = next(t for t in report.data()["tensors"] if t["module"] == "0" and t["kind"] == "output")
    assert output["zeros"] == 0  # measured before ReLU overwrote its negatives with zeros


def test_json_report_has_the_data_and_the_recommendations(overflow_report, tmp_path):
    path = overflow_report.save(tmp_path / "report.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "mpx-inspection/1"
    assert {t["kind"] for t in data["tensors"]} == {"input", "output", "weight", "grad"}
    assert data["recommendations"]["keep_fp32"]["fp16"] == overflow_report.keep_fp32("fp16")
    entry = data["tensors"][0]
    assert sum(n for _, n in entry["histogram"]) + entry["zeros"] + entry["inf"] + entry["nan"] == entry["count"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: mpx.inspect(m, formats=("fp17",)), "fp17"),
        (lambda m: mpx.inspect(m, every=0), "every"),
        (lambda m: mpx.inspect(m, threshold=2.0), "threshold"),
        (lambda m: mpx.inspect("model"), "torch.nn.Module"),
        (lambda m: mpx.inspect(m, formats=("fp16",)).overflowing("bf16"), "formats="),
        (lambda m: mpx.inspect(m).underflowing("fp16", kinds=("activations",)), "kinds are"),
        (lambda m: mpx.inspect(m).underflowing("fp16", loss_scale=3.0), "power of two"),
        (lambda m: mpx.inspect(m).save("report.txt"), ".html or .json"),
    ],
)
def test_bad_input_raises_an_mpx_error_naming_the_fix(call, message):
    with pytest.raises(mpx.MpxError, match=message):
        call(overflowing_model())


def test_recording_steps_read_nothing_back_to_the_host(monkeypatch):
    monkeypatch.setattr("mpx.training.optimizer_step.HOST_DEVICES", ())  # the path an accelerator's step takes
    model, x, y, _ = tiny_gradient_model()
    trainer = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=1e-3), "cpu", "fp16-mixed",
                                 inspect={"every": 2})  # fmt: skip
    for step in range(4):
        with _HostReads() as reads:
            trainer.zero_grad()
            with trainer.autocast():
                out = model(x)
            trainer.backward(mpx.mse_loss(out, y))
            trainer.step()
        assert reads.reads == [], f"step {step} read a device value"


def test_metrics_are_device_tensors_and_the_norm_is_the_unscaled_gradients():
    model, x, y, _ = tiny_gradient_model()
    trainer = train_mixed(model, x, y, 1)
    metrics = trainer.metrics()
    assert set(metrics) == {"loss_scale", "skipped_steps", "skipped", "grad_norm"}
    assert all(isinstance(v, torch.Tensor) for v in metrics.values()) and torch.isnan(metrics["grad_norm"])
    trainer.zero_grad()
    with trainer.autocast():
        out = model(x)
    trainer.backward(mpx.mse_loss(out, y))
    trainer.unscale_()
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    trainer.step()
    assert trainer.metrics()["grad_norm"] == pytest.approx(float(expected), rel=1e-5)
