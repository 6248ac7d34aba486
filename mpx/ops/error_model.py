"""The fp32 error model: the sum of |terms| behind each output and the length of its fp32 rounding chain.

An accumulation tolerance bounds the error of a result computed in fp32 by the classic
`n * u * sum(|terms|)` (u = 2**-24), plus `n * eta` for results that pass through fp32's
subnormal range (eta = half fp32's smallest subnormal, or fp32's smallest normal under flushing).
`n` is the number of fp32 roundings along the longest chain: the reduction length, plus the few
element-wise roundings around it. Non-linear ops state their bound as first-order error coefficients
instead (n = 1); the softmax ones live here because attention and cross-entropy reuse them.
"""

from __future__ import annotations

import math
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


# lambda of the probabilistic bound: a sum of n terms in fp32 is off by at most sum_factor(n) * u * sum(|terms|)
# with probability at least 1 - 2n * exp(-lambda**2 * (1 - u)**2 / 2) (Higham & Mary, SIAM J. Sci. Comput.
# 41(5), 2019, Theorem 3.1: rounding errors independent, mean zero); lambda = 8: 1 - 4.2e-10 at n = 16384.
LAMBDA = 8.0
_U = 2.0**-24


def sum_factor(n: int) -> float:
    """The factor of u * sum(|terms|) that bounds an fp32 sum of n terms, never above the worst case n.

    min(n, gamma(lambda) / u) with gamma(lambda) = exp(lambda * sqrt(n) * u + n * u**2 / (1 - u)) - 1: from
    n > 100 on, about lambda * sqrt(n) (see LAMBDA for the confidence). An fp16 or bf16 running sum makes
    errors of ~2**13 times u per addition, far beyond it (see tolerance.py).
    """
    if n <= 1:
        return float(max(n, 0))
    probabilistic = math.expm1(LAMBDA * math.sqrt(n) * _U + n * _U * _U / (1 - _U)) / _U
    return min(float(n), probabilistic)


def failure_probability(n: int) -> float:
    """The chance that an honest fp32 sum of n terms exceeds sum_factor(n) (0 where the worst case n is used)."""
    if sum_factor(n) >= n:
        return 0.0
    return min(1.0, 2 * n * math.exp(-(LAMBDA**2) * (1 - _U) ** 2 / 2))


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
    the row sum sum_factor(L) more, the division 1. Non-finite shifts (exactly 0 after exp, or NaN rows) add nothing.
    """
    return finite_or_zero((x - x.amax(dim=-1, keepdim=True)).abs()) + sum_factor(x.shape[-1]) + 4


def log_softmax_error(x: torch.Tensor) -> torch.Tensor:
    """Absolute error coefficient of log_softmax(x): |s| + |out| + the log of the sum's relative error."""
    shifted = finite_or_zero((x - x.amax(dim=-1, keepdim=True)).abs())
    out = torch.log_softmax(x, dim=-1)
    y = torch.softmax(x, dim=-1)
    log_sum = finite_or_zero(out.neg() - shifted).abs()
    row_sum = (y * (shifted + 2)).sum(dim=-1, keepdim=True)
    return shifted + finite_or_zero(out.abs()) + row_sum + x.shape[-1] + log_sum + 1
