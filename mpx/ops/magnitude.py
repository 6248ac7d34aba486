"""Magnitude: the sum of |terms| behind each output and the length of its fp32 rounding chain.

An accumulation tolerance bounds the error of a result computed in fp32 by the classic
`n * u * sum(|terms|)` (u = 2**-24), plus `n * eta` for results that pass through fp32's
subnormal range (eta = half fp32's smallest subnormal, or fp32's smallest normal under flushing).
`n` is the number of fp32 roundings along the longest chain: the reduction length, plus the few
element-wise roundings around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Lengths = int | tuple[int, ...]


@dataclass(frozen=True)
class Magnitude:
    """How to bound an op's fp32 rounding error, per output (forward) or per differentiable arg (backward).

    forward(*abs_inputs, **attrs) -> sum(|terms|) per output; forward_n(*inputs, **attrs) -> n.
    backward(abs_inputs, abs_grad_outputs, **attrs) -> sum(|terms|) per differentiable arg; None means
    autograd through `forward` (right for multilinear ops: matmul, linear, conv, sums).
    signed=True hands the functions the inputs and gradients with their signs, for non-linear ops
    (softmax, norms, attention, losses, optimizer updates) whose error coefficients need them.
    """

    forward: Callable[..., tuple[torch.Tensor, ...]]
    forward_n: Callable[..., Lengths]
    backward: Callable[..., tuple[torch.Tensor, ...]] | None = None
    backward_n: Callable[..., Lengths] | None = None
    signed: bool = False

    def __call__(self, *abs_inputs: torch.Tensor, **attrs: object) -> tuple[torch.Tensor, ...]:
        return self.forward(*abs_inputs, **attrs)


def lengths(value: Lengths, count: int) -> tuple[int, ...]:
    """One n per output: an int applies to all of them."""
    return (value,) * count if isinstance(value, int) else tuple(value)


def one(*inputs: torch.Tensor, **attrs: object) -> int:
    """n = 1: bounds already written as first-order error coefficients in units of 2**-24."""
    return 1


def first_order(
    forward: Callable[..., tuple[torch.Tensor, ...]], backward: Callable[..., tuple[torch.Tensor, ...]] | None = None
) -> Magnitude:
    """A signed Magnitude whose functions return first-order error coefficients (n = 1 both ways)."""
    return Magnitude(forward, one, backward, one, signed=True)
