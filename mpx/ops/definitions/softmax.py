"""softmax and log_softmax over the last dimension (fp32 under autocast).

Bounds are first-order error coefficients of the usual fp32 algorithm, in units of 2**-24 (n = 1).
With s = x - max(x) over a row of length L: exp(s) carries a relative error of |s| (from rounding s)
plus 2 (exp itself), the row sum L more, the division 1 (see error_model.shift_error).
"""

from __future__ import annotations

import torch

from ...formats import Format
from .. import inputs as gen
from ..error_model import Terms, first_order, log_softmax_error, shift_error
from ..spec import ACCUMULATED, BASIC_CLASSES, SPECIAL_VALUE_CLASSES, Arg, InputClass, OpSpec, Reference

_SHAPES = {"normal": (8, 32), "special": (8, 16), "odd-shape": (7, 5, 13), "long-reduction": (4, gen.LONG)}


def _inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    shape = _SHAPES[input_class]
    if input_class == "special":
        return (gen.with_specials(fmt, shape, generator, scale=3.0),)
    return (gen.normal(fmt, shape, generator, scale=3.0),)


def _softmax(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.softmax(x, dim=-1),)


def _log_softmax(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.log_softmax(x, dim=-1),)


def _row_sum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dim=-1, keepdim=True)


def _softmax_forward_terms(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.softmax(x, dim=-1) * shift_error(x),)


def _softmax_backward_terms(
    inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    # dx = y * (g - sum(g * y)): y's relative error c, the row sum's L, two more roundings
    (x,), g = inputs, grads[0].abs()
    y, c = torch.softmax(x, dim=-1), shift_error(x)
    weighted = _row_sum(g * y)
    terms = y * c * (g + weighted) + y * (_row_sum(g * y * c) + x.shape[-1] * weighted) + 2 * y * (g + weighted)
    return (terms,)


def _log_softmax_forward_terms(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (log_softmax_error(x),)


def _log_softmax_backward_terms(
    inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    # dx = g - exp(out) * sum(g): exp(out) inherits out's absolute error as a relative one
    (x,), g = inputs, grads[0].abs()
    y = torch.softmax(x, dim=-1)
    return (g + y * _row_sum(g) * (log_softmax_error(x) + x.shape[-1] + 4),)


def _row_op(name: str, reference: Reference, forward_terms: Terms, backward_terms: Terms, doc: str) -> OpSpec:
    """A last-dimension op on one input, fp32 under autocast, bounded by first-order coefficients."""
    return OpSpec(
        name,
        "model",
        (Arg("x"),),
        reference,
        _inputs,
        ACCUMULATED,
        "fp32",
        input_classes=(*BASIC_CLASSES, *SPECIAL_VALUE_CLASSES),
        magnitude=first_order(forward_terms, backward_terms),
        doc=doc,
    )


SPECS: tuple[OpSpec, ...] = (
    _row_op("softmax", _softmax, _softmax_forward_terms, _softmax_backward_terms, "softmax over the last dimension"),
    _row_op(
        "log_softmax",
        _log_softmax,
        _log_softmax_forward_terms,
        _log_softmax_backward_terms,
        "log of softmax over the last dimension",
    ),
)
