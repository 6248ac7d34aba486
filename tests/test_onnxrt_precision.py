"""The scaler / master-weight protocol on the EP: AdamW and SGD master updates against torch.optim, skipped
steps, and the EP's measured overflow / subnormal semantics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import mpx
from mpx.backends.onnxrt.semantics import _classify
from mpx.ops import get_op

FP32, FP16 = mpx.format("fp32"), mpx.format("fp16")


@pytest.fixture(scope="module")
def backend():
    return mpx.get_backend("onnxrt")


def _ulps(a: torch.Tensor, b: torch.Tensor, *scales: torch.Tensor) -> float:
    """max |a - b| in fp32 ULPs of b, or of the largest of |b| and |scales| (the operands of the last add)."""
    magnitude = b.abs()
    for scale in scales:
        magnitude = torch.maximum(magnitude, scale.abs())
    return float(((a.double() - b.double()).abs() / FP32.ulp(magnitude)).max())


def _torch_adamw_step(master, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step):
    """torch.optim.AdamW's single-tensor step, op for op in fp32, with a correctly rounded sqrt."""
    master, exp_avg, exp_avg_sq = master.clone(), exp_avg.clone(), exp_avg_sq.clone()
    master.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step_size = lr / (1 - beta1**step)
    denominator = (exp_avg_sq.double().sqrt().float() / (1 - beta2**step) ** 0.5).add_(eps)
    master.addcdiv_(exp_avg, denominator, value=-step_size)
    return master, exp_avg, exp_avg_sq


def _adam_trajectory(backend, steps: int = 100):
    """(EP result, torch.optim.AdamW result, old weight) per step, each step run from AdamW's own state."""
    op = get_op("adam_master_update")
    attrs = dict(op.attrs)
    generator = torch.Generator().manual_seed(0)
    parameter = torch.nn.Parameter(torch.randn(64, 33, generator=generator))
    optimizer = torch.optim.AdamW(
        [parameter],
        lr=attrs["lr"],
        betas=(attrs["beta1"], attrs["beta2"]),
        eps=attrs["eps"],
        weight_decay=attrs["weight_decay"],
        foreach=False,
    )
    zeros, found_inf = torch.zeros_like(parameter.detach()), torch.tensor(0.0)
    for step in range(1, steps + 1):
        state = optimizer.state[parameter]
        moments = state.get("exp_avg", zeros).clone(), state.get("exp_avg_sq", zeros).clone()
        before = (parameter.detach().clone(), *moments)
        grad = FP16.round(torch.randn(parameter.shape, generator=generator)).half()
        stepped = dataclasses.replace(op, attrs={**attrs, "step": step})
        got = backend.run(stepped, FP16, (before[0], grad, before[1], before[2], found_inf))
        exact_sqrt = _torch_adamw_step(before[0], grad.float(), before[1], before[2], **stepped.attrs)
        parameter.grad = grad.float()
        optimizer.step()
        state = optimizer.state[parameter]
        yield got, exact_sqrt, (parameter.detach().clone(), state["exp_avg"], state["exp_avg_sq"]), before[0]


def test_adam_master_update_matches_torch_adamw_math_within_one_ulp_over_100_steps(backend):
    """100 steps, each from the same state: the EP graph against torch's AdamW kernels in fp32."""
    worst = 0.0
    for got, want, _, _ in _adam_trajectory(backend):
        worst = max(worst, *(_ulps(g, w) for g, w in zip(got, want, strict=True)))
    assert worst <= 1.0


def test_adam_master_update_tracks_torch_optim_adamw_itself(backend):
    """Against torch.optim.AdamW proper the moments match bit for bit; the weight differs at most by 2 ULPs
    of the update's operands, because torch's CPU fp32 sqrt is not correctly rounded (the graph's is)."""
    for got, _, optim, before in _adam_trajectory(backend, steps=30):
        assert torch.equal(got[1], optim[1]) and torch.equal(got[2], optim[2])
        assert _ulps(got[0], optim[0], before, optim[0] - before) <= 2.0


@pytest.mark.parametrize("name", ["adam_master_update", "sgd_master_update"])
def test_a_skipped_step_leaves_weights_and_state_bit_identical(backend, name):
    op = get_op(name)
    generator = torch.Generator().manual_seed(3)
    fp32 = [torch.randn(16, 8, generator=generator) for a in op.args if a.role == "fp32" and a.name != "found_inf"]
    grad = torch.randn(16, 8, generator=generator).half()
    grad[0, 0] = float("inf")
    inputs = [fp32[0], grad, *fp32[1:]]
    if name == "adam_master_update":
        inputs[3] = inputs[3].abs()  # exp_avg_sq is a mean of squares
    before = [t.clone() for t in inputs]
    results = backend.run(op, FP16, (*inputs, torch.tensor(1.0)))
    state_inputs = [before[0], *before[2:]]
    for got, original in zip(results, state_inputs, strict=True):
        assert torch.equal(got.view(torch.int32), original.view(torch.int32))


def test_sgd_master_update_matches_torch_sgd(backend):
    op = get_op("sgd_master_update")
    attrs = op.attrs
    generator = torch.Generator().manual_seed(1)
    master, buffer = torch.randn(32, 8, generator=generator), torch.randn(32, 8, generator=generator)
    grad = torch.randn(32, 8, generator=generator).half()
    parameter = torch.nn.Parameter(master.clone())
    optimizer = torch.optim.SGD(
        [parameter], lr=attrs["lr"], momentum=attrs["momentum"], weight_decay=attrs["weight_decay"], foreach=False
    )
    optimizer.state[parameter]["momentum_buffer"] = buffer.clone()
    parameter.grad = grad.float()
    optimizer.step()
    new_master, new_buffer = backend.run(op, FP16, (master, grad, buffer, torch.tensor(0.0)))
    assert _ulps(new_master, parameter.detach()) <= 1.0
    assert _ulps(new_buffer, optimizer.state[parameter]["momentum_buffer"]) <= 1.0


def test_nonfinite_check_and_unscale_run_the_scaler_protocol_on_the_ep(backend):
    grads = torch.tensor([[1.0, 2.0], [65504.0, -3.0]]).half()
    (found,) = backend.run(get_op("nonfinite_check"), FP16, (grads,))
    assert found.dtype == torch.float32 and found.shape == () and float(found) == 0.0
    (scaled,) = backend.run(get_op("scale"), FP16, (grads, torch.tensor(2.0)))
    (found,) = backend.run(get_op("nonfinite_check"), FP16, (scaled,))
    assert float(found) == 1.0  # 65504 * 2 overflows fp16 on this EP
    (unscaled,) = backend.run(get_op("unscale"), FP16, (grads, torch.tensor(0.5)))
    assert unscaled.dtype == torch.float32 and torch.equal(unscaled, grads.float() * 0.5)


def test_measured_semantics_of_the_cpu_ep(backend):
    semantics = backend.describe()["semantics"]
    assert semantics["fp16"] == {"overflow": "inf", "subnormals": "keep", "probe": "Mul", "fallback": ""}
    assert {s["overflow"] for s in semantics.values()} == {"inf"}
    assert backend.overflow == "inf" and backend.subnormals == "keep"


@pytest.mark.parametrize(
    "big,small,want",
    [
        (np.inf, 2.0**-24, ("inf", "keep")),
        (65504.0, 0.0, ("saturate", "flush")),
        (np.nan, 2.0**-20, ("inf", "keep")),
    ],
)
def test_probe_results_are_classified(big, small, want):
    semantics = _classify(FP16, np.array([big, small], dtype=np.float32), "Mul")
    assert (semantics.overflow, semantics.subnormals) == want
