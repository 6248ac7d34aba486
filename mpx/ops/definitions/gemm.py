"""GEMM-like model ops (low precision under autocast, fp32 accumulation): matmul, linear, conv2d.

Their error bound is the classic one of an fp32 dot product: magnitude = the op applied to |inputs|
(the sum of |terms|), n = the reduction length; the backward terms come from autograd through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...formats import Format
from .. import inputs as gen
from ..error_model import LengthOf, Magnitude
from ..inputs import gemm_operand as operand
from ..spec import (
    ACCUMULATED,
    ACCUMULATION_CLASSES,
    BASIC_CLASSES,
    SPECIAL_VALUE_CLASSES,
    Arg,
    InputClass,
    InputMaker,
    OpSpec,
    Reference,
)

# (m, k, n): k is the reduction length
_GEMM_SHAPES = {
    "normal": (16, 32, 8),
    "special": (8, 16, 8),
    "odd-shape": (17, 33, 7),
    "long-reduction": (4, gen.LONG, 3),
    **{c: (16, gen.accumulation_length(c), 8) for c in ACCUMULATION_CLASSES},
    "overflow": (4, 8, 3),
}
# (batch, channels, size, out_channels) for a 3x3 convolution, padding 1: the reduction is channels * 9
_CONV_SHAPES = {
    "normal": (2, 4, 6, 5),
    "special": (1, 3, 5, 4),
    "odd-shape": (3, 5, 7, 3),
    "long-reduction": (1, 456, 4, 2),
    # a 3x3 output of a 3x3 input: the centre sums every one of the channels * 9 (about N) positive terms
    **{c: (1, max(1, gen.accumulation_length(c) // 9), 3, 4) for c in ACCUMULATION_CLASSES},
    "overflow": (2, 3, 4, 2),
}
# every GEMM-like op: the basic classes, each special value alone, the accumulation probes and overflow
GEMM_CLASSES: tuple[InputClass, ...] = (*BASIC_CLASSES, *SPECIAL_VALUE_CLASSES, *ACCUMULATION_CLASSES, "overflow")


def _bias(fmt: Format, shape: tuple[int, ...], input_class: InputClass, generator: torch.Generator) -> torch.Tensor:
    """A bias: one more term of the sum (positive where the terms are: accumulation-N sums cannot cancel)."""
    return (
        operand(fmt, shape, input_class, generator) if input_class != "special" else gen.normal(fmt, shape, generator)
    )


def _matmul_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    m, k, n = _GEMM_SHAPES[input_class]
    if input_class == "overflow":  # each row's sum overflows, near the format's max and far beyond it
        return gen.overflow_rows(fmt, m, k), torch.ones(k, n, dtype=torch.float64)
    return operand(fmt, (m, k), input_class, generator), operand(fmt, (k, n), input_class, generator)


def _linear_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    m, k, n = _GEMM_SHAPES[input_class]
    if input_class == "overflow":
        ones = torch.ones(n, k, dtype=torch.float64)
        return gen.overflow_rows(fmt, m, k), ones, torch.zeros(n, dtype=torch.float64)
    return (
        operand(fmt, (m, k), input_class, generator),
        operand(fmt, (n, k), input_class, generator),
        _bias(fmt, (n,), input_class, generator),
    )


def _conv_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    batch, channels, size, out_channels = _CONV_SHAPES[input_class]
    if input_class == "overflow":  # weights +-1 by output channel; image 0 just over max, image 1 far over
        x = torch.zeros(batch, channels, size, size, dtype=torch.float64)
        x[0, 0, 1, 1:3] = gen.just_over(fmt)
        x[1:] = fmt.max
        weight = torch.ones(out_channels, channels, 3, 3, dtype=torch.float64)
        weight = weight * gen.alternating(out_channels).reshape(-1, 1, 1, 1)
        return x, weight, torch.zeros(out_channels, dtype=torch.float64)
    return (
        operand(fmt, (batch, channels, size, size), input_class, generator),
        operand(fmt, (out_channels, channels, 3, 3), input_class, generator),
        _bias(fmt, (out_channels,), input_class, generator),
    )


def _matmul(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (a @ b,)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.linear(x, weight, bias),)


def _conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.conv2d(x, weight, bias, padding=1),)


def _gemm(
    name: str,
    args: tuple[Arg, ...],
    reference: Reference,
    make_inputs: InputMaker,
    n: LengthOf,
    backward_n: LengthOf,
    doc: str,
) -> OpSpec:
    """A GEMM-like op: low precision under autocast, bounded by the fp32 dot product over n terms."""
    return OpSpec(
        name,
        "model",
        args,
        reference,
        make_inputs,
        ACCUMULATED,
        "lowp",
        input_classes=GEMM_CLASSES,
        magnitude=Magnitude(reference, n, backward_n=backward_n),
        doc=doc,
    )


SPECS: tuple[OpSpec, ...] = (
    _gemm(
        "matmul",
        (Arg("a"), Arg("b")),
        _matmul,
        _matmul_inputs,
        lambda a, b: a.shape[-1],
        lambda a, b: (b.shape[-1], a.shape[0]),
        "a @ b for a (m, k) and b (k, n)",
    ),
    _gemm(
        "linear",
        (Arg("x"), Arg("weight"), Arg("bias")),
        _linear,
        _linear_inputs,
        lambda x, w, b: x.shape[-1] + 1,
        lambda x, w, b: (w.shape[0], x.shape[0], x.shape[0]),
        "x @ weight.T + bias",
    ),
    _gemm(
        "conv2d",
        (Arg("x"), Arg("weight"), Arg("bias")),
        _conv2d,
        _conv_inputs,
        lambda x, w, b: w[0].numel() + 1,
        lambda x, w, b: (w.shape[0] * 9, x.shape[0] * x[0, 0].numel(), x.shape[0] * x[0, 0].numel()),
        "2-D convolution, 3x3 kernel, stride 1, padding 1, with bias",
    ),
)
