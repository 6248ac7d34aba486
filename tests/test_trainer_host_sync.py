"""mpx.MixedPrecision never reads a device tensor back to the host in step(); on the CPU a skip is a branch."""

import copy

import pytest
import torch
from trainer_helpers import _backward, _batch, _host_step_counts, _HostReads, _model, _poison

import mpx


@pytest.mark.parametrize("policy", ["fp16-mixed", "bf16-mixed", "fp16-pure", "fp8-hybrid"])
@pytest.mark.parametrize(
    "optimizer",
    [
        torch.optim.Adam,
        torch.optim.AdamW,
        torch.optim.SGD,
        torch.optim.RMSprop,
        lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True),
    ],
)
def test_step_reads_nothing_back_to_the_host(policy, optimizer, monkeypatch):
    monkeypatch.setattr("mpx.training.optimizer_step.HOST_DEVICES", ())  # the path an accelerator's step takes
    model = _model()
    mp = mpx.MixedPrecision(model, optimizer(model.parameters(), lr=1e-3), policy=policy, loss_scale="dynamic")
    _backward(mp, model, *_batch())
    mp.step()  # the first step creates the optimizer state; the checked one runs with state in place
    _backward(mp, model, *_batch())
    mp.clip_grad_norm_(1.0)
    counters = {id(t) for t in _host_step_counts(mp.optimizer)}
    item = torch.Tensor.item
    for name in ("cpu", "numpy", "tolist", "item"):

        def forbidden(tensor, *a, _n=name, **k):
            if _n == "item" and id(tensor) in counters:
                return item(tensor)
            pytest.fail(f"step() called .{_n}()")

        monkeypatch.setattr(torch.Tensor, name, forbidden)
    with _HostReads(_host_step_counts(mp.optimizer)) as reads:
        mp.step()
    assert reads.reads == []


def test_tensor_learning_rate_needs_no_host_sync_beyond_torchs_own_step(monkeypatch):
    """torch's non-capturable AdamW reads a tensor LR on the host itself; mpx's step adds no read of its own."""
    monkeypatch.setattr("mpx.training.optimizer_step.HOST_DEVICES", ())  # the path an accelerator's step takes
    model, reference = _model(), _model()
    mp = mpx.MixedPrecision(model, torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3)), policy="fp16-mixed")
    plain = torch.optim.AdamW(reference.parameters(), lr=torch.tensor(1e-3))
    for _ in range(2):
        _backward(mp, model, *_batch())
        mpx.mse_loss(reference(_batch()[0]), _batch()[1]).backward()
        with _HostReads() as ours:
            mp.step()
        with _HostReads() as theirs:
            plain.step()
    assert len(ours.reads) == len(theirs.reads)


def test_on_the_cpu_a_skipped_step_is_a_branch_on_the_host_flag_and_changes_nothing():
    """The flag lives in host memory there: no copy of parameters and state, and plain torch's step otherwise."""
    model = _model()
    mp = mpx.MixedPrecision(model, torch.optim.Adam(model.parameters(), lr=1e-3), policy="fp16-mixed")
    _backward(mp, model, *_batch())
    mp.step()
    before = [p.detach().clone() for p in model.parameters()], copy.deepcopy(mp.optimizer.state_dict())
    _poison(model)
    with _HostReads() as reads:
        assert mp.step().was_skipped
    assert len(reads.reads) <= 2  # the skip flag (and was_skipped)
    assert all(torch.equal(a, b) for a, b in zip(before[0], model.parameters(), strict=True))
    assert str(before[1]) == str(mp.optimizer.state_dict())
