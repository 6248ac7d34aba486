"""Capture a whole training step into a CUDA graph once and replay it (one launch per step).

The step must be graph-safe: static shapes, no host syncs (mpx's scaler and fused_step qualify),
capturable optimizers, and learning rates that are tensors if a scheduler changes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from mpx.errors import BackendUnavailableError, OptimizerError, TrainingInputError


def check_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Raise OptimizerError unless `optimizer` can step inside a CUDA graph."""
    groups = optimizer.param_groups
    if "capturable" in optimizer.defaults and not all(group.get("capturable") for group in groups):
        name = type(optimizer).__name__
        raise OptimizerError(
            f"{name} was built with capturable=False, so its step cannot be captured in a CUDA graph; "
            f"build it with {name}(..., capturable=True) (fused=True may be added for speed)"
        )


class GraphedStep:
    """A training step captured into a CUDA graph: call it with new inputs of the same shapes."""

    def __init__(
        self, graph: torch.cuda.CUDAGraph, static_inputs: tuple[torch.Tensor, ...], static_output: Any
    ) -> None:
        self.graph, self.static_inputs, self.static_output = graph, static_inputs, static_output

    def __call__(self, *inputs: torch.Tensor) -> Any:
        """Copy `inputs` into the captured buffers, replay, and return the step's (reused) outputs."""
        if len(inputs) != len(self.static_inputs):
            raise TrainingInputError(f"the captured step takes {len(self.static_inputs)} inputs, got {len(inputs)}")
        for static, new in zip(self.static_inputs, inputs, strict=True):
            if new.shape != static.shape:
                expected, got = tuple(static.shape), tuple(new.shape)
                raise TrainingInputError(f"a CUDA graph replays fixed shapes: expected {expected}, got {got}")
            static.copy_(new, non_blocking=True)
        self.graph.replay()
        return self.static_output


def capture_step(
    step: Callable[..., Any],
    *example_inputs: torch.Tensor,
    optimizers: Iterable[torch.optim.Optimizer] = (),
    warmup_steps: int = 3,
) -> GraphedStep:
    """Run `step(*inputs)` `warmup_steps` times on a side stream (these are real steps), then capture it.

    Gradients of `optimizers` are set to None before capture so backward allocates them in the graph's pool.
    """
    if not example_inputs or not all(isinstance(t, torch.Tensor) and t.is_cuda for t in example_inputs):
        raise BackendUnavailableError("capture_step needs the step's inputs as CUDA tensors (CUDA graphs need a GPU)")
    if warmup_steps < 1:
        raise OptimizerError(
            f"warmup_steps must be >= 1 (optimizer state must exist before capture), not {warmup_steps}"
        )
    optimizers = list(optimizers)
    for optimizer in optimizers:
        check_capturable(optimizer)
    static_inputs = tuple(t.clone() for t in example_inputs)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup_steps):
            step(*static_inputs)
    torch.cuda.current_stream().wait_stream(side)
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            static_output = step(*static_inputs)
    except RuntimeError as error:
        raise OptimizerError(
            "the step could not be captured in a CUDA graph; it probably reads a device value on the host "
            f"(.item(), float(t), print, an `if` on a tensor) or changes shapes: {error}"
        ) from error
    return GraphedStep(graph, static_inputs, static_output)
