"""The fp32 error model: the sum of |terms| behind each output and the length of its fp32 rounding chain.

An accumulation tolerance bounds the error of a result computed in fp32 by the classic
`n * u * sum(|terms|)` (u = 2**-24), plus `n * eta` for results that pass through fp32's
subnormal range (eta = half fp32's smallest subnormal, or fp32's smallest normal under flushing).
`n` is the number of fp32 roundings along the longest chain: the reduction length, plus the few
element-wise roundings around it. Non-linear ops state their bound as first-order error coefficients
instead (n = 1); the softmax ones live here because attention and cross-entropy reuse them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..formats import finite_or_zero

Lengths = int | tuple[int, ...]
# forward(*inputs, **attrs) or backward(inputs, grad_outputs, **attrs) -> one tensor per result
Terms = Callable[..., tuple[torch.Tensor, ...]]
# (*inputs, **attrs) -> the length n of the fp32 rounding chain, one for all results or one per result
LengthOf = Callable[..., Lengths]


@dataclass(frozen=True)
class Magnitude:
    """How to bound an op's fp32 rounding error, per output (forward) or per differentiable arg (backward).

    forward(*abs_inputs, **attrs) -> sum(|terms|) per output; forward_n(*inputs, **attrs) -> n.
    backward(abs_inputs, abs_grad_outputs, **attrs) -> sum(|terms|) per differentiable arg; None means
    autograd through `forward` (right for multilinear ops: matmul, linear, conv, sums).
    signed=True hands the functions the inputs and gradients with their signs, for non-linear ops
    (softmax, norms, attention, losses, optimizer updates) whose error coefficients need them.
    """

    forward: Terms
    forward_n: LengthOf
    backward: Terms | None = None
    backward_n: LengthOf | None = None
    signed: bool = False

    def __call__(self, *abs_inputs: torch.Tensor, **attrs: object) -> tuple[torch.Tensor, ...]:
        return self.forward(*abs_inputs, **attrs)


def lengths(value: Lengths, count: int) -> tuple[int, ...]:
    """One n per output: an int applies to all of them."""
    return (value,) * count if isinstance(value, int) else tuple(value)


def one(*inputs: torch.Tensor, **attrs: object) -> int:
    """n = 1: bounds already written as first-order error coefficients in units of 2**-24."""
    return 1


def first_order(forward: Terms, backward: Terms | None = None) -> Magnitude:
    """A signed Magnitude whose functions return first-order error coefficients (n = 1 both ways)."""
    return Magnitude(forward, one, backward, one, signed=True)


def shift_error(x: torch.Tensor) -> torch.Tensor:
    """Relative error coefficient of softmax(x) per element: |x - max| + L + 4.

    With s = x - max(x) over a row of length L: exp(s) carries |s| (from rounding s) plus 2 (exp itself),
    the row sum L more, the division 1. Non-finite shifts (exactly 0 after exp, or NaN rows) add nothing.
    """
    return finite_or_zero((x - x.amax(dim=-1, keepdim=True)).abs()) + x.shape[-1] + 4


def log_softmax_error(x: torch.Tensor) -> torch.Tensor:
    """Absolute error coefficient of log_softmax(x): |s| + |out| + the log of the sum's relative error."""
    shifted = finite_or_zero((x - x.amax(dim=-1, keepdim=True)).abs())
    out = torch.log_softmax(x, dim=-1)
    y = torch.softmax(x, dim=-1)
    log_sum = finite_or_zero(out.neg() - shifted).abs()
    row_sum = (y * (shifted + 2)).sum(dim=-1, keepdim=True)
    return shifted + finite_or_zero(out.abs()) + row_sum + x.shape[-1] + log_sum + 1
