"""Capturing a training step into a CUDA graph: validation on the CPU, capture and replay on a GPU."""

import pytest
import torch

from mpx import BackendUnavailableError, ScalingError
from mpx.training.cuda_graphs import capture_step, check_capturable

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_non_capturable_adam_is_refused_with_the_fix():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.randn(2))])
    with pytest.raises(ScalingError, match="capturable=True"):
        check_capturable(optimizer)


def test_sgd_needs_no_capturable_flag():
    check_capturable(torch.optim.SGD([torch.nn.Parameter(torch.randn(2))], lr=0.1))


def test_cpu_inputs_cannot_be_captured():
    with pytest.raises(BackendUnavailableError, match="CUDA tensors"):
        capture_step(lambda x: x, torch.randn(2))


@needs_gpu
def test_a_captured_step_replays_the_same_updates_as_eager_steps():
    from mpx.training.fused_step import fused_step

    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(16, 1).cuda()
        return model, torch.optim.Adam(model.parameters(), lr=1e-2, fused=True, capturable=True)

    def step_for(model, optimizer):
        def step(x, y):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(x), y)
            (loss * 128).backward()
            found_inf = torch.zeros(1, device="cuda")
            fused_step(optimizer, torch.full((1,), 128.0, device="cuda"), found_inf)
            return loss.detach()

        return step

    x, y = torch.randn(32, 16, device="cuda"), torch.randn(32, 1, device="cuda")
    eager_model, eager_opt = make()
    graphed_model, graphed_opt = make()
    eager = step_for(eager_model, eager_opt)
    graphed = capture_step(step_for(graphed_model, graphed_opt), x, y, optimizers=[graphed_opt], warmup_steps=3)
    for _ in range(3):
        eager(x, y)  # the warm-up steps were real steps
    for _ in range(5):
        eager(x, y)
        graphed(x, y)
    assert torch.allclose(eager_model.weight, graphed_model.weight, rtol=1e-5, atol=1e-6)
