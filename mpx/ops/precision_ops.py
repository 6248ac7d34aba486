"""Precision ops: casts, loss scaling, the non-finite check, masked master-weight updates."""

from __future__ import annotations

import torch

from ..formats import FP32, Format
from . import inputs as gen
from .registry import register
from .spec import EXACT, Arg, InputClass, OpSpec

_SHAPE = (8, 16)


def _fp32_source(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """fp32 values to cast: a spread of magnitudes around fmt's range, plus fmt's specials and exact ties."""
    if input_class == "normal":
        return (gen.normal(FP32, _SHAPE, generator, scale=fmt.max**0.5 if fmt.is_fp8 else 4.0),)
    values = gen.plant(gen.normal(FP32, _SHAPE, generator), gen.special_values(fmt), generator)
    a, b = gen.ties(fmt)
    values.view(-1)[: a.numel()] = FP32.round(a + b)  # halfway between two fmt values (fp32 holds them exactly)
    values.view(-1)[a.numel()] = fmt.max * (1 + fmt.eps / 4)  # just over max: rounds to max, not overflow
    values.view(-1)[a.numel() + 1] = fmt.min_subnormal / 2  # halfway to zero
    return (FP32.round(values),)


def _identity(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x,)


register(
    OpSpec(
        "cast",
        "precision",
        (Arg("x", role="fp32"),),
        _identity,
        _fp32_source,
        EXACT,
        "promote",
        doc="fp32 -> the case's format, round to nearest even (the output rounding is the whole op)",
    )
)
