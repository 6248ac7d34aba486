"""Reductions over the last dimension: reduce_sum, reduce_mean (fp32 under autocast), reduce_max (exact)."""

from __future__ import annotations

import torch

from ...formats import Format
from .. import inputs as gen
from ..error_model import LengthOf, Magnitude, one
from ..spec import (
    ACCUMULATED,
    ACCUMULATION_CLASSES,
    BASIC_CLASSES,
    EXACT,
    SPECIAL_VALUE_CLASSES,
    Arg,
    InputClass,
    OpSpec,
    Reference,
)

_SHAPES = {
    "normal": (8, 64),
    "special": (8, 32),
    "odd-shape": (7, 13, 33),
    "long-reduction": (4, gen.LONG),
    **{c: (16, gen.accumulation_length(c)) for c in ACCUMULATION_CLASSES},
    "overflow": (4, 8),
}
_EVERY = (*BASIC_CLASSES, *SPECIAL_VALUE_CLASSES)


def _inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    shape = _SHAPES[input_class]
    if input_class == "special":
        return (gen.with_specials(fmt, shape, generator, large=gen.accumulator_safe_large(fmt)),)
    if input_class == "overflow":  # each row's sum overflows, near the format's max and far beyond it
        return (gen.overflow_rows(fmt, *shape),)
    return (gen.gemm_operand(fmt, shape, input_class, generator),)


def _sum(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x.sum(dim=-1),)


def _mean(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x.mean(dim=-1),)


def _max(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x.amax(dim=-1),)  # backward: the gradient split evenly between tied maxima


def _length(x: torch.Tensor) -> int:
    return x.shape[-1]


def _length_and_division(x: torch.Tensor) -> int:
    return x.shape[-1] + 1


def _accumulated(name: str, reference: Reference, n: LengthOf, doc: str, overflows: bool) -> OpSpec:
    """A reduction computed in fp32 (autocast's fp32 class): the fp32 sum bound over n terms."""
    return OpSpec(
        name,
        "model",
        (Arg("x"),),
        reference,
        _inputs,
        ACCUMULATED,
        "fp32",
        input_classes=(*_EVERY, *ACCUMULATION_CLASSES, *(("overflow",) if overflows else ())),
        magnitude=Magnitude(reference, n, backward_n=one),
        doc=doc,
    )


SPECS: tuple[OpSpec, ...] = (
    _accumulated("reduce_sum", _sum, _length, "sum over the last dimension", overflows=True),
    # a mean never exceeds its largest term: no exact result overflows
    _accumulated("reduce_mean", _mean, _length_and_division, "mean over the last dimension", overflows=False),
    OpSpec(
        "reduce_max",
        "model",
        (Arg("x"),),
        _max,
        _inputs,
        EXACT,
        "promote",
        input_classes=_EVERY,
        doc="maximum over the last dimension (exact: the result is one of the inputs)",
    ),
)
