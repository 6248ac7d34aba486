"""MixedPrecision on onnxrt: the step's protocol runs on the EP; an injected inf skips the step there with
masters, moments, step counts and parameters bit-identical, and the loss scale backs off."""

from __future__ import annotations

import pytest
import torch

import mpx
from mpx.conformance.cases import Case
from mpx.conformance.runner import run_case
from mpx.formats import format as get_format
from mpx.ops import get_op


@pytest.fixture(scope="module")
def onnxrt():
    return mpx.get_backend("onnxrt")


def _trainer(backend, policy: str, make_optimizer):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 1))
    optimizer = make_optimizer(model.parameters())
    return model, optimizer, mpx.MixedPrecision(model, optimizer, backend=backend, policy=policy)


def _backward(model, mp, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 16, generator=generator), torch.randn(64, 1, generator=generator)
    mp.zero_grad()
    with mp.autocast():
        out = model(x.to(next(model.parameters()).dtype))
    mp.backward(mpx.mse_loss(out, y))


def _snapshot(model, optimizer) -> list[torch.Tensor]:
    """Parameters, masters and every optimizer state tensor, as copies."""
    tensors = [p.detach().clone() for p in model.parameters()]
    for group in optimizer.param_groups:
        for master in group["params"]:
            tensors.append(master.detach().clone())
            tensors += [v.clone() for v in optimizer.state[master].values() if isinstance(v, torch.Tensor)]
    return tensors


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).view(torch.uint8)


def _no_host_protocol(monkeypatch) -> None:
    """Make the host's unscale / masked step / cast back fail the test if anything falls back to them."""
    import mpx.training.optimizer_step as optimizer_step
    import mpx.training.overflow as overflow

    monkeypatch.setattr(overflow, "unscale_and_check_", lambda *args: pytest.fail("host unscale ran"))
    monkeypatch.setattr(optimizer_step, "masked_step", lambda *args: pytest.fail("host step ran"))
    monkeypatch.setattr(mpx.TrainingBackend, "cast_back", lambda *args: pytest.fail("host cast back ran"), raising=True)


@pytest.mark.parametrize("policy", ["fp16-mixed", "fp16-pure", "bf16-pure"])
@pytest.mark.parametrize(
    "make",
    [lambda p: torch.optim.AdamW(p, lr=1e-3), lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9)],
    ids=["adamw", "sgd"],
)
def test_an_injected_inf_skips_the_step_on_the_ep_bit_identically(onnxrt, monkeypatch, policy, make):
    model, optimizer, mp = _trainer(onnxrt, policy, make)
    _no_host_protocol(monkeypatch)
    for seed in range(3):  # real steps first, so that moments and step counts are not zeros
        _backward(model, mp, seed)
        assert not mp.step().was_skipped
    before, scale = _snapshot(model, optimizer), float(mp.scaler.loss_scale)
    _backward(model, mp, 3)
    next(model.parameters()).grad.view(-1)[5] = float("inf")
    result = mp.step()
    assert result.was_skipped and int(mp.skipped_steps) == 1
    after = _snapshot(model, optimizer)
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert old.dtype == new.dtype and torch.equal(
            old.reshape(-1).view(torch.uint8), new.reshape(-1).view(torch.uint8)
        )
    assert float(mp.scaler.loss_scale) == (scale / 2 if mp.policy.name != "bf16-pure" else scale)
    _backward(model, mp, 4)
    assert not mp.step().was_skipped  # and the next step trains again
    assert any(not torch.equal(a, b) for a, b in zip(after, _snapshot(model, optimizer), strict=True))


def test_training_on_onnxrt_follows_the_cpu_backend_in_fp32(onnxrt):
    """fp32, SGD, 10 steps: the EP's forward, backward and update follow torch on the host to fp32 rounding
    (ORT's GEMM kernels sum in another order than torch's; the update itself is bit for bit, see above)."""
    cpu = mpx.get_backend("cpu")
    runs = []
    for backend in (cpu, onnxrt):
        model, optimizer, mp = _trainer(backend, "fp32", lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9))
        for seed in range(10):
            _backward(model, mp, seed)
            mp.step()
        runs.append([p.detach() for p in model.parameters()])
    for got, want in zip(runs[1], runs[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["unscale", "nonfinite_check", "sgd_master_update", "adam_master_update", "cast_back"])
@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp8_e4m3"])  # every precision op takes fp8 (a cast target)
def test_conformance_certifies_the_protocol_that_trains(onnxrt, monkeypatch, op, fmt):
    """The precision ops' cases on onnxrt run the training protocol's EP graphs (not the host) and pass."""
    spec = get_op(op)
    _no_host_protocol(monkeypatch)
    calls = []
    real = type(onnxrt).protocol_op
    monkeypatch.setattr(type(onnxrt), "protocol_op", lambda self, *a: calls.append(a[0].name) or real(self, *a))
    for input_class in [c for c in spec.input_classes if spec.defines(get_format(fmt), "forward", c)]:
        result = run_case(onnxrt, Case(op, fmt, "forward", input_class))
        assert result.status.value == "pass", result.detail
    assert calls and set(calls) == {op}
