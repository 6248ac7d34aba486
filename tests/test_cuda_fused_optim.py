"""Fused optimizer steps taking grad_scale / found_inf as tensors (tested with torch's CPU fused kernels)."""

import pytest
import torch

from mpx import ScalingError
from mpx.training.fused_step import enable_fused, fused_step, supports_fused_step


def _pair(kind):
    torch.manual_seed(0)
    p, q = torch.nn.Parameter(torch.randn(32)), torch.nn.Parameter(torch.randn(32))
    q.data.copy_(p.data)
    return p, q, kind([p], lr=0.1, fused=True), kind([q], lr=0.1)


@pytest.mark.parametrize("kind", [torch.optim.Adam, torch.optim.AdamW])
def test_a_fused_step_on_scaled_gradients_equals_a_plain_step_on_unscaled_ones(kind):
    p, q, fused, plain = _pair(kind)
    grad = torch.randn(32)
    p.grad, q.grad = grad * 1024, grad.clone()
    fused_step(fused, torch.tensor([1024.0]), torch.zeros(1))
    plain.step()
    assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)


def test_found_inf_leaves_weights_moments_and_step_count_unchanged():
    p, _, fused, _ = _pair(torch.optim.Adam)
    p.grad = torch.randn(32)
    fused_step(fused, None, torch.zeros(1))
    before = (p.detach().clone(), {k: v.clone() for k, v in fused.state[p].items()})
    p.grad = torch.full((32,), float("inf"))
    fused_step(fused, torch.tensor([8.0]), torch.ones(1))
    assert torch.equal(p, before[0])
    assert all(torch.equal(fused.state[p][k], v) for k, v in before[1].items())


def test_enable_fused_switches_a_fresh_adam_and_refuses_a_started_one():
    p = torch.nn.Parameter(torch.randn(4))
    fresh = torch.optim.AdamW([p])
    assert not supports_fused_step(fresh)
    assert enable_fused(fresh) and supports_fused_step(fresh)
    started = torch.optim.Adam([p])
    p.grad = torch.randn(4)
    started.step()
    assert not enable_fused(started)


def test_an_optimizer_without_a_fused_kernel_gets_a_clear_error():
    p = torch.nn.Parameter(torch.randn(4))
    with pytest.raises(ScalingError, match="fused=True"):
        fused_step(torch.optim.RMSprop([p]), torch.ones(1), torch.zeros(1))
    assert not enable_fused(torch.optim.RMSprop([p]))


def test_the_fused_step_attributes_are_removed_afterwards():
    p, _, fused, _ = _pair(torch.optim.SGD)
    p.grad = torch.randn(32)
    fused_step(fused, torch.ones(1), torch.zeros(1))
    assert not hasattr(fused, "grad_scale") and not hasattr(fused, "found_inf")
