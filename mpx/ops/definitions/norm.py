"""Normalizations: layer_norm and rms_norm (fp32 under autocast), batch_norm in inference mode.

Bounds are first-order error coefficients of the fp32 algorithms in units of 2**-24 (n = 1). For a row
of length L with mean mu and sigma = sqrt(var + eps), the normalized value xhat carries an absolute
error of (L + 4) * (mean|x| / sigma + |xhat| * (1 + mean(x^2) / sigma^2)): the mean's rounding, and the
variance's, which grows with its condition number mean(x^2) / var.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...formats import Format, finite_or_zero
from .. import inputs as gen
from ..error_model import Terms, first_order
from ..spec import ACCUMULATED, BASIC_CLASSES, SPECIAL_VALUE_CLASSES, Arg, InputClass, InputMaker, OpSpec, Reference

EPS = 1e-5
_SHAPES = {"normal": (8, 32), "special": (8, 16), "odd-shape": (7, 3, 13), "long-reduction": (4, gen.LONG)}
# (batch, channels, size): batch_norm in inference mode has no reduction, only per-element math
_BN_SHAPES = {"normal": (4, 3, 5), "special": (2, 4, 4), "odd-shape": (3, 5, 7)}


def _row_inputs(
    fmt: Format, input_class: InputClass, generator: torch.Generator, with_bias: bool
) -> tuple[torch.Tensor, ...]:
    shape = _SHAPES[input_class]
    if input_class == "special":
        # rows spanning 2**20: 1/sigma**3 (in the backward) stays a normal fp32 number
        x = gen.with_specials(fmt, shape, generator, large=2.0**20)
    else:
        x = gen.normal(fmt, shape, generator, scale=2.0) + fmt.round(torch.tensor(0.5, dtype=torch.float64))
        x = fmt.round(x)
    weight = fmt.round(1 + gen.normal(fmt, shape[-1:], generator, scale=0.25))
    return (x, weight, gen.normal(fmt, shape[-1:], generator, scale=0.25)) if with_bias else (x, weight)


def _layer_norm_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    return _row_inputs(fmt, input_class, generator, with_bias=True)


def _rms_norm_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    return _row_inputs(fmt, input_class, generator, with_bias=False)


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.layer_norm(x, x.shape[-1:], weight, bias, eps=EPS),)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.rms_norm(x, x.shape[-1:], weight, eps=EPS),)


def _normalized(x: torch.Tensor, centered: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """xhat, 1/sigma and xhat's absolute error coefficient."""
    length = x.shape[-1]
    mean = x.mean(-1, keepdim=True) if centered else torch.zeros_like(x[..., :1])
    second = (x * x).mean(-1, keepdim=True)
    variance = (second - mean * mean).clamp(min=0) if centered else second
    inverse = 1 / torch.sqrt(variance + EPS)
    xhat = (x - mean) * inverse
    condition = 1 + second * inverse * inverse
    error = (length + 4) * (x.abs().mean(-1, keepdim=True) * inverse * centered + xhat.abs() * condition)
    return finite_or_zero(xhat), finite_or_zero(inverse), finite_or_zero(error)


def _norm_backward(
    x: torch.Tensor, weight: torch.Tensor, g: torch.Tensor, centered: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Error coefficients of dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sigma, dweight, dbias."""
    length, rows = x.shape[-1], x[..., 0].numel()
    xhat, inverse, error = _normalized(x, centered)
    xhat = xhat.abs()
    dxhat = g * weight.abs()
    mean_d = dxhat.mean(-1, keepdim=True) * centered
    mean_dx = (dxhat * xhat).mean(-1, keepdim=True)
    size = dxhat + mean_d + xhat * mean_dx  # the terms of dx * sigma
    rounding = (
        length * mean_d + error * mean_dx + xhat * ((dxhat * error).mean(-1, keepdim=True) + (length + 2) * mean_dx)
    )
    # d(1/sigma)/dx goes through (1/sigma)**3 (torch's rsqrt backward): three times 1/sigma's relative error
    sigma_error = 3 * (length + 4) * (1 + (x * x).mean(-1, keepdim=True) * inverse * inverse)
    dx = inverse * (rounding + 3 * size + sigma_error * size)
    dweight = (g * (error + (rows + 1) * xhat)).reshape(-1, length).sum(0)
    dbias = g.reshape(-1, length).sum(0) * rows
    return finite_or_zero(dx), finite_or_zero(dweight), dbias


def _layer_norm_forward_terms(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
    xhat, _, error = _normalized(x, True)
    return (weight.abs() * (error + 2 * xhat.abs()) + 2 * bias.abs(),)


def _layer_norm_backward_terms(
    inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    x, weight, _ = inputs
    return _norm_backward(x, weight, grads[0].abs(), True)


def _rms_norm_forward_terms(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    xhat, _, error = _normalized(x, False)
    return (weight.abs() * (error + 2 * xhat.abs()),)


def _rms_norm_backward_terms(
    inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    x, weight = inputs
    return _norm_backward(x, weight, grads[0].abs(), False)[:2]


def _bn_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    batch, channels, size = _BN_SHAPES[input_class]
    shape = (batch, channels, size, size)
    x = (
        gen.with_specials(fmt, shape, generator, large=gen.accumulator_safe_large(fmt), scale=2.0)
        if input_class == "special"
        else gen.normal(fmt, shape, generator, 2.0)
    )
    weight = fmt.round(1 + gen.normal(fmt, (channels,), generator, scale=0.25))
    bias = gen.normal(fmt, (channels,), generator, scale=0.25)
    mean = gen.normal(fmt, (channels,), generator, scale=0.5)
    variance = gen.uniform(fmt, (channels,), generator, 0.25, 4.0)
    return x, weight, bias, mean, variance


def _batch_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    return (F.batch_norm(x, mean, variance, weight, bias, training=False, eps=EPS),)


def _channel(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1, 1, 1)


def _bn_forward_terms(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    inverse = _channel(1 / torch.sqrt(variance.abs() + EPS))
    return (6 * (_channel(weight.abs()) * (x.abs() + _channel(mean.abs())) * inverse + _channel(bias.abs())),)


def _bn_backward_terms(inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    x, weight, _, mean, variance = inputs
    g = grads[0].abs()
    inverse = _channel(1 / torch.sqrt(variance.abs() + EPS))
    count = x[:, 0].numel()
    xhat = (x.abs() + _channel(mean.abs())) * inverse
    return 4 * g * _channel(weight.abs()) * inverse, (g * xhat).sum((0, 2, 3)) * (count + 4), g.sum((0, 2, 3)) * count


def _row_norm(
    name: str,
    args: tuple[Arg, ...],
    reference: Reference,
    make_inputs: InputMaker,
    forward_terms: Terms,
    backward_terms: Terms,
    doc: str,
) -> OpSpec:
    """A normalization over the last dimension, fp32 under autocast."""
    return OpSpec(
        name,
        "model",
        args,
        reference,
        make_inputs,
        ACCUMULATED,
        "fp32",
        input_classes=(*BASIC_CLASSES, *SPECIAL_VALUE_CLASSES),
        magnitude=first_order(forward_terms, backward_terms),
        doc=f"{doc} over the last dimension, eps={EPS}",
    )


SPECS: tuple[OpSpec, ...] = (
    _row_norm(
        "layer_norm",
        (Arg("x"), Arg("weight"), Arg("bias")),
        _layer_norm,
        _layer_norm_inputs,
        _layer_norm_forward_terms,
        _layer_norm_backward_terms,
        "layer normalization",
    ),
    _row_norm(
        "rms_norm",
        (Arg("x"), Arg("weight")),
        _rms_norm,
        _rms_norm_inputs,
        _rms_norm_forward_terms,
        _rms_norm_backward_terms,
        "RMS normalization",
    ),
    OpSpec(
        "batch_norm",
        "model",
        (
            Arg("x"),
            Arg("weight"),
            Arg("bias"),
            Arg("running_mean", differentiable=False),
            Arg("running_var", differentiable=False),
        ),
        _batch_norm,
        _bn_inputs,
        ACCUMULATED,
        "promote",
        input_classes=("normal", "special", "odd-shape", *SPECIAL_VALUE_CLASSES),
        magnitude=first_order(_bn_forward_terms, _bn_backward_terms),
        doc=f"batch normalization in inference mode (running statistics), NCHW, eps={EPS}; torch.autocast keeps the "
        "input's format",
    ),
)
