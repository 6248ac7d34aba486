"""The job behind `mpx train`: an MLP on a synthetic regression task (MSE) with a backend and a precision preset."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.progress import Progress

from mpx.errors import TrainingInputError
from mpx.plugins.backend import Backend
from mpx.plugins.manager import get_backend
from mpx.training.losses import mse_loss
from mpx.training.memory import bytes_per_parameter as measure_bytes
from mpx.training.state_formats import FP32_STATE, LEAN_ADAM
from mpx.training.trainer import MixedPrecision

STATE_RECIPES = {"fp32": FP32_STATE, "lean": LEAN_ADAM}


@dataclass
class TrainSummary:
    """The outcome of one run; `final_loss` is the mean loss of the last 10 steps.

    `step_time_ms` is the mean of the steps after the first; `first_step_ms` includes what the first step
    compiles (the onnxrt backend's graphs). `placement`: where the backend ran each graph (mp.placement()).
    """

    backend: str
    precision: str
    steps: int
    seed: int
    final_loss: float
    steps_skipped: int
    final_scale: float
    step_time_ms: float
    bytes_per_param: float
    master_weights: bool
    loss_curve: list[float]
    world_size: int = 1  # ranks of a distributed run (mpx train --nproc)
    parallel: str = "none"  # ddp or fsdp when world_size > 1
    first_step_ms: float = 0.0
    placement: list[dict[str, Any]] = field(default_factory=list)


def make_task(seed: int, inputs: int = 32, samples: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher network's outputs on Gaussian inputs: y = tanh(x W1) w2, learnable by an MLP."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, inputs, generator=generator)
    w1 = torch.randn(inputs, 64, generator=generator) / inputs**0.5
    w2 = torch.randn(64, 1, generator=generator) / 8
    return x, torch.tanh(x @ w1) @ w2


def make_model(seed: int, inputs: int = 32, hidden: int = 128) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, 1),
    )


def train(
    backend: str | Backend = "cpu",
    precision: str = "bf16-mixed",
    steps: int = 200,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 128,
    hidden: int = 128,
    loss_scale: Any = None,
    master_weights: bool = True,
    state_recipe: str = "fp32",
    progress: bool = False,
    inspect: Callable[[Any], None] | None = None,
) -> TrainSummary:
    """Train the MLP for `steps` Adam steps; the data order depends on `seed` only.

    inspect: train with MixedPrecision(inspect=True) and call this with its InspectionReport at the end.
    """
    if steps < 1:
        raise TrainingInputError(f"--steps must be >= 1, got {steps}")
    resolved = get_backend(backend) if isinstance(backend, str) else backend
    x, y = make_task(seed)
    model = make_model(seed, x.shape[1], hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    mp = MixedPrecision(
        model,
        optimizer,
        resolved,
        precision,
        loss_scale,
        master_weights=master_weights,
        state_formats=STATE_RECIPES[state_recipe],
        inspect=inspect is not None,
    )
    order = torch.Generator().manual_seed(seed + 1)
    losses: list[torch.Tensor] = []
    device = resolved.device
    start = first_done = time.perf_counter()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{precision} on {resolved.name}", total=steps)
        for _ in range(steps):
            index = torch.randint(0, x.shape[0], (batch_size,), generator=order)
            inputs, targets = x[index].to(device), y[index].to(device)
            mp.zero_grad()
            with mp.autocast():
                out = model(inputs.to(next(model.parameters()).dtype))
            loss = mse_loss(out, targets)
            mp.backward(loss)
            mp.step()
            losses.append(loss.detach())
            bar.advance(task)
            if len(losses) == 1:
                first_done = time.perf_counter()
    end = time.perf_counter()
    later_steps = (end - first_done) / (steps - 1) if steps > 1 else first_done - start
    if inspect is not None:
        inspect(mp.inspection)
    tail = torch.stack(losses[-10:]).float()
    return TrainSummary(
        backend=resolved.name,
        precision=str(mp.policy),
        steps=steps,
        seed=seed,
        final_loss=float(tail.mean()),
        steps_skipped=int(mp.skipped_steps),
        final_scale=float(mp.scaler.loss_scale),
        step_time_ms=1000 * later_steps,
        bytes_per_param=measure_bytes(model, optimizer, mp),
        master_weights=master_weights,
        loss_curve=torch.stack(losses).float().tolist(),
        first_step_ms=1000 * (first_done - start),
        placement=mp.placement(),
    )
