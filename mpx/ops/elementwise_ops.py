"""Element-wise model ops: add, mul, relu, gelu, silu, exp, sqrt, where.

The CPU emulation computes them in float64 from the stored inputs and rounds once, which is the
correctly rounded result. add, mul, relu and where are exactly rounded on any IEEE unit computing in
fp32 (fp32 has more than 2p+2 bits for every narrower format), so they must be exact; transcendental
ops and backward passes of two or more operations get 1 ULP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..formats import Format
from . import inputs as gen
from .registry import register
from .spec import EXACT, Arg, InputClass, OpSpec, Tolerance

ONE_ULP = Tolerance(1.0)
CLASSES = ("normal", "special", "odd-shape")
_SHAPES = {"normal": (8, 16), "special": (8, 16), "odd-shape": (7, 13, 3)}


def _unary_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    if input_class == "special":
        return (gen.with_specials(fmt, _SHAPES["special"], generator, scale=2.0),)
    return (gen.normal(fmt, _SHAPES[input_class], generator, scale=2.0),)


def _positive_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """sqrt's domain; the special class also has -0, negatives (NaN) and +inf."""
    (x,) = _unary_inputs(fmt, input_class, generator)
    return (x if input_class == "special" else x.abs(),)


def _binary_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    shape = _SHAPES[input_class]
    a, b = gen.normal(fmt, shape, generator, 2.0), gen.normal(fmt, shape, generator, 2.0)
    if input_class == "special":
        a, b = gen.plant(a, gen.special_values(fmt), generator), gen.plant(b, gen.special_values(fmt), generator)
        tie_a, tie_b = gen.ties(fmt)  # sums that land exactly halfway between two values of fmt
        a.view(-1)[: tie_a.numel()], b.view(-1)[: tie_b.numel()] = tie_a, tie_b
    return a, b


def _where_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    a, b = _binary_inputs(fmt, input_class, generator)
    return torch.rand(a.shape, generator=generator) < 0.5, a, b


def _add(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (a + b,)


def _mul(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (a * b,)


def _relu(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.relu(x),)


def _gelu(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.gelu(x),)


def _silu(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.silu(x),)


def _exp(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.exp(x),)


def _sqrt(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.sqrt(x),)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.where(mask, a, b),)


_X, _AB = (Arg("x"),), (Arg("a"), Arg("b"))
for _name, _args, _reference, _inputs, _tolerance, _autocast, _doc in (
    ("add", _AB, _add, _binary_inputs, EXACT, "promote", "a + b"),
    ("mul", _AB, _mul, _binary_inputs, EXACT, "promote", "a * b"),
    ("relu", _X, _relu, _unary_inputs, EXACT, "promote", "max(x, 0)"),
    ("gelu", _X, _gelu, _unary_inputs, ONE_ULP, "promote", "x * Phi(x) (the exact erf form)"),
    ("silu", _X, _silu, _unary_inputs, ONE_ULP, "promote", "x * sigmoid(x)"),
    ("exp", _X, _exp, _unary_inputs, ONE_ULP, "fp32", "e ** x"),
    ("sqrt", _X, _sqrt, _positive_inputs, ONE_ULP, "promote", "square root (NaN below zero)"),
    (
        "where",
        (Arg("mask", role="mask", differentiable=False), *_AB),
        _where,
        _where_inputs,
        EXACT,
        "promote",
        "a where mask else b",
    ),
):
    register(
        OpSpec(
            _name,
            "model",
            _args,
            _reference,
            _inputs,
            _tolerance,
            _autocast,
            input_classes=CLASSES,
            doc=f"{_doc}, element-wise",
        )
    )
