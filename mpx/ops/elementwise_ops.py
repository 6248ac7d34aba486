"""Element-wise model ops: add, mul, relu, gelu, silu, exp, sqrt, where."""

from __future__ import annotations

import torch

from ..formats import Format
from . import inputs as gen
from .registry import register
from .spec import EXACT, Arg, InputClass, OpSpec, Tolerance

ONE_ULP = Tolerance(1.0)
_SHAPES = {"normal": (8, 16), "special": (8, 16), "odd-shape": (7, 13, 3)}


def _unary_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    if input_class == "special":
        return (gen.with_specials(fmt, _SHAPES["special"], generator),)
    return (gen.normal(fmt, _SHAPES[input_class], generator, scale=2.0),)


def _binary_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    shape = _SHAPES[input_class]
    a, b = gen.normal(fmt, shape, generator, 2.0), gen.normal(fmt, shape, generator, 2.0)
    if input_class == "special":
        a, b = gen.plant(a, gen.special_values(fmt), generator), gen.plant(b, gen.special_values(fmt), generator)
        tie_a, tie_b = gen.ties(fmt)  # sums that land exactly halfway between two values of fmt
        a.view(-1)[: tie_a.numel()], b.view(-1)[: tie_b.numel()] = tie_a, tie_b
    return a, b


def _add(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (a + b,)


register(
    OpSpec(
        "add",
        "model",
        (Arg("a"), Arg("b")),
        _add,
        _binary_inputs,
        EXACT,
        "promote",
        input_classes=("normal", "special", "odd-shape"),
        doc="a + b, element-wise (exactly rounded)",
    )
)
