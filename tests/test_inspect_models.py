"""The inspector on the conformance suite's model-level cases, on the emulated and the native cpu backend."""

import pytest
import torch

import mpx
from mpx.conformance.model_zoo import MODELS

# torch's own bf16 LSTM needs oneDNN support this CPU may lack (it fails without the inspector too): the LSTM
# runs on the emulated backend only
CASES = [(name, False) for name in sorted(MODELS)] + [(name, True) for name in sorted(MODELS) if name != "lstm"]


@pytest.mark.parametrize("name, native", CASES, ids=[f"{n}-{'native' if v else 'emulated'}" for n, v in CASES])
def test_every_zoo_model_trains_with_the_inspector_and_reports_each_watched_module(name, native):
    spec = MODELS[name]
    torch.manual_seed(0)
    model = spec.build()
    batch = spec.data(torch.Generator().manual_seed(0))
    backend = mpx.get_backend("cpu", native=native)
    trainer = mpx.MixedPrecision(model, spec.optimizer(list(model.parameters())), backend, "bf16-mixed", inspect=True)
    for _ in range(2):
        trainer.zero_grad()
        with trainer.autocast():
            loss = spec.loss(model, batch)
        trainer.backward(loss)
        trainer.step()
    data = trainer.inspection.data()
    parameters = {name for name, p in model.named_parameters() if p.requires_grad}
    graded = {f"{t['module']}.{t['parameter']}".lstrip(".") for t in data["tensors"] if t["kind"] == "grad"}
    assert graded == parameters  # every parameter's gradient, under its owner's qualified name
    assert data["recorded_steps"] == [0, 1] and data["first_nonfinite"] is None
    assert all(t["count"] > 0 for t in data["tensors"])
    assert set(data["recommendations"]["modules"]) <= {n for n, _ in model.named_modules()}
