"""Element-wise model ops: add, mul, relu, gelu, silu, exp, sqrt, where.

The CPU emulation computes them in float64 from the stored inputs and rounds once, which is the
correctly rounded result. add, mul, relu and where are exactly rounded on any IEEE unit computing in
fp32 (fp32 has more than 2p+2 bits for every narrower format), so they must be exact; exp and sqrt get
1 ULP. gelu and silu get 1 ULP plus the first-order error of their standard fp32 algorithms (each
primitive -- erf, exp, +, *, / -- within 1 ULP): 0.5 * x * (1 + erf(x / sqrt 2)) cancels in the negative
tail, so no fp32 implementation, torch's own included, is within 1 ULP of the result there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...formats import Format
from ...policy import AutocastClass
from .. import inputs as gen
from ..error_model import first_order
from ..spec import ACCUMULATED, EXACT, SPECIAL_VALUE_CLASSES, Arg, InputClass, InputMaker, OpSpec, Reference, Tolerance

ONE_ULP = Tolerance(1.0)
CLASSES: tuple[InputClass, ...] = ("normal", "special", "odd-shape", *SPECIAL_VALUE_CLASSES)
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


def _normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _gelu_terms(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Error coefficient of 0.5 * x * (1 + erf(x / sqrt 2)): erf's ULP, 1 + erf, the argument, two products."""
    e = torch.erf(x / math.sqrt(2))
    return (x.abs() * (e.abs() + 0.5 * (1 + e)) + x * x * _normal_pdf(x) + 2 * F.gelu(x).abs(),)


def _gelu_backward_terms(inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Error coefficient of g * (Phi(x) + x * phi(x)): Phi as in the forward, x * phi with exp's ULP and x^2 / 2's."""
    (x,), g = inputs, grads[0].abs()
    e, x_phi = torch.erf(x / math.sqrt(2)), (x * _normal_pdf(x)).abs()
    derivative = (0.5 * (1 + e) + x * _normal_pdf(x)).abs()
    return (g * (e.abs() + 0.5 * (1 + e) + x_phi * (5 + 0.5 * x * x) + 2 * derivative),)


def _silu_terms(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Error coefficient of x / (1 + exp(-x)) (or x * sigmoid(x)): exp's ULP through sigmoid, two roundings."""
    s = torch.sigmoid(x)
    return (2 * x.abs() * s * (1 - s) + 3 * F.silu(x).abs(),)


def _silu_backward_terms(inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Error coefficient of g * s * (1 + x * (1 - s)): sigmoid's error times d/ds, and each rounding."""
    (x,), g = inputs, grads[0].abs()
    s = torch.sigmoid(x)
    inner = 1 + x * (1 - s)
    sigmoid_error = 2 * s * (2 - s)
    terms = (1 + x - 2 * x * s).abs() * sigmoid_error + 2 * s * (x * (1 - s)).abs() + s * inner.abs()
    return (g * (terms + 2 * (s * inner).abs()),)


def _exp(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.exp(x),)


def _sqrt(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.sqrt(x),)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.where(mask, a, b),)


_X, _AB = (Arg("x"),), (Arg("a"), Arg("b"))
_CONDITIONING = {
    "gelu": first_order(_gelu_terms, _gelu_backward_terms),
    "silu": first_order(_silu_terms, _silu_backward_terms),
}
_TABLE: tuple[tuple[str, tuple[Arg, ...], Reference, InputMaker, Tolerance, AutocastClass, str], ...] = (
    ("add", _AB, _add, _binary_inputs, EXACT, "promote", "a + b"),
    ("mul", _AB, _mul, _binary_inputs, EXACT, "promote", "a * b"),
    ("relu", _X, _relu, _unary_inputs, EXACT, "promote", "max(x, 0)"),
    ("gelu", _X, _gelu, _unary_inputs, ACCUMULATED, "promote", "x * Phi(x) (the exact erf form)"),
    ("silu", _X, _silu, _unary_inputs, ACCUMULATED, "promote", "x * sigmoid(x)"),
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
)
SPECS: tuple[OpSpec, ...] = tuple(
    OpSpec(
        name,
        "model",
        args,
        reference,
        make_inputs,
        tolerance,
        autocast,
        input_classes=CLASSES,
        magnitude=_CONDITIONING.get(name),
        doc=f"{doc}, element-wise",
    )
    for name, args, reference, make_inputs, tolerance, autocast, doc in _TABLE
)
# the CPU emulation computes these in float64 and rounds once (see the module docstring)
ELEMENTWISE_OPS = frozenset(spec.name for spec in SPECS)
