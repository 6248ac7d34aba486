"""GEMM-like model ops (low precision under autocast, fp32 accumulation): matmul, linear, conv2d."""

from __future__ import annotations

import torch

from ..formats import Format
from . import inputs as gen
from .magnitude import Magnitude
from .registry import register
from .spec import Arg, InputClass, OpSpec, Tolerance

ACCUMULATED = Tolerance(1.0, accumulation=True)
_MATMUL_SHAPES = {
    "normal": (16, 32, 8),
    "special": (8, 16, 8),
    "odd-shape": (17, 33, 7),
    "long-reduction": (4, gen.LONG, 3),
}


def _operand(fmt: Format, shape: tuple[int, ...], input_class: InputClass, generator: torch.Generator) -> torch.Tensor:
    if input_class == "special":
        return gen.with_specials(fmt, shape, generator, large=gen.accumulator_safe_large(fmt))
    return gen.normal(fmt, shape, generator)


def _matmul_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    m, k, n = _MATMUL_SHAPES[input_class]
    return _operand(fmt, (m, k), input_class, generator), _operand(fmt, (k, n), input_class, generator)


def _matmul(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (a @ b,)


register(
    OpSpec(
        "matmul",
        "model",
        (Arg("a"), Arg("b")),
        _matmul,
        _matmul_inputs,
        ACCUMULATED,
        "lowp",
        input_classes=("normal", "special", "odd-shape", "long-reduction"),
        magnitude=Magnitude(_matmul, lambda a, b: a.shape[-1], backward_n=lambda a, b: (b.shape[-1], a.shape[0])),
        doc="a @ b for 2-D a (m, k) and b (k, n)",
    )
)
