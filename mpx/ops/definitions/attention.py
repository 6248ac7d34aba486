"""scaled_dot_product_attention: softmax(q k^T / sqrt(d)) v (low precision under autocast, like SDPA in torch).

Bound (units of 2**-24, n = 1): the scores t carry (f(d) + 1) * scale * (|q| @ |k|^T) =: T; each attention
weight p a relative error r = shift_error(t) + T + sum(p * T); out = p @ v adds the length-L sum, f(L).
f = error_model.sum_factor: a length-n sum's n, or the probabilistic ~8 sqrt(n) where that is smaller.
"""

from __future__ import annotations

import math

import torch

from ...formats import Format, finite_or_zero
from .. import inputs as gen
from ..error_model import first_order, shift_error, sum_factor
from ..spec import ACCUMULATED, ACCUMULATION_CLASSES, BASIC_CLASSES, SPECIAL_VALUE_CLASSES, Arg, InputClass, OpSpec

# (batch, heads, query length, key length, head dim)
_SHAPES = {
    "normal": (2, 2, 8, 8, 16),
    "special": (1, 2, 6, 6, 8),
    "odd-shape": (1, 3, 7, 11, 5),
    "long-reduction": (1, 1, 4, gen.LONG, 16),
    **{c: (1, 1, 4, gen.accumulation_length(c), 16) for c in ACCUMULATION_CLASSES},
}


def _inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    batch, heads, queries, keys, dim = _SHAPES[input_class]
    q = gen.gemm_operand(fmt, (batch, heads, queries, dim), input_class, generator)
    k = gen.normal(fmt, (batch, heads, keys, dim), generator)
    v_shape = (batch, heads, keys, dim)  # accumulation-N: p @ v sums N positive terms
    v = (
        gen.positive(fmt, v_shape, generator)
        if input_class in ACCUMULATION_CLASSES
        else gen.normal(fmt, v_shape, generator)
    )
    return q, k, v


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # the math form: torch's fused CPU kernel answers 0 for some rows whose scores are NaN
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return (torch.softmax(scores, dim=-1) @ v,)


def _weights(q: torch.Tensor, k: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The score scale, the attention weights p and p's relative error coefficient."""
    scale = 1 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-1, -2) * scale
    p = torch.softmax(scores, dim=-1)
    score_error = (sum_factor(q.shape[-1]) + 1) * scale * (q.abs() @ k.abs().transpose(-1, -2))
    relative = shift_error(scores) + score_error + (p * score_error).sum(-1, keepdim=True)
    return scale, p, finite_or_zero(relative)


def _forward_terms(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    _, p, relative = _weights(q, k)
    return ((p * (relative + sum_factor(k.shape[-2]) + 1)) @ v.abs(),)


def _backward_terms(inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    q, k, v = inputs
    g = grads[0].abs()
    scale, p, relative = _weights(q, k)
    queries, keys, dim = q.shape[-2], k.shape[-2], q.shape[-1]
    gv = g @ v.abs().transpose(-1, -2)  # |dp| bound
    weighted = (p * gv).sum(-1, keepdim=True)
    spread = gv + weighted  # |dp - sum(p * dp)| bound
    ds_terms = p * (spread * (relative + 2 + sum_factor(dim)) + sum_factor(keys) * weighted)
    ds_bound = p * spread
    dq = scale * ((ds_terms + (sum_factor(keys) + 1) * ds_bound) @ k.abs())
    dk = scale * ((ds_terms + (sum_factor(queries) + 1) * ds_bound).transpose(-1, -2) @ q.abs())
    dv = (p * (relative + sum_factor(queries) + 1)).transpose(-1, -2) @ g
    return dq, dk, dv


SPECS: tuple[OpSpec, ...] = (
    OpSpec(
        "scaled_dot_product_attention",
        "model",
        (Arg("q"), Arg("k"), Arg("v")),
        _attention,
        _inputs,
        ACCUMULATED,
        "lowp",
        input_classes=(*BASIC_CLASSES, *SPECIAL_VALUE_CLASSES, *ACCUMULATION_CLASSES),
        magnitude=first_order(_forward_terms, _backward_terms),
        doc="softmax(q @ k^T / sqrt(d)) @ v, no mask, q/k/v of shape (batch, heads, length, d)",
    ),
)
