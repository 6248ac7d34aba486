"""Precision ops: casts, loss scaling, the non-finite check and masked fp32 master-weight updates.

cast, cast_back, scale (by a power of two) and unscale (an fp32 product of a stored value) are single
roundings, so they must be exact. The optimizer updates run in fp32 like torch's: their bound is the
first-order error coefficient of the fp32 update in units of 2**-24 (a few fp32 ULPs of the terms);
with found_inf set they must return their inputs bit for bit. On a TrainingBackend, unscale, nonfinite_check,
the master updates and cast_back are computed by the backend's training protocol (mpx.training.protocol_ops):
the methods MixedPrecision.step calls. The references below are what they are measured against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...formats import FP32, Format
from .. import inputs as gen
from ..error_model import Terms, first_order
from ..spec import ACCUMULATED, EXACT, SPECIAL_VALUE_CLASSES, Arg, InputClass, InputMaker, OpSpec, Reference

_SHAPE = (8, 16)
SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "step": 10}


def _fp32_source(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """fp32 values to cast: a spread around fmt's range, plus fmt's specials, exact ties and near-overflow values."""
    shape = (7, 13) if input_class == "odd-shape" else _SHAPE
    if input_class != "special":
        return (gen.normal(FP32, shape, generator, scale=fmt.max**0.5 if fmt.is_fp8 else 4.0),)
    values = gen.plant(gen.normal(FP32, shape, generator), gen.special_values(fmt), generator)
    a, b = gen.ties(fmt)
    values.view(-1)[: a.numel()] = FP32.round(a + b)  # halfway between two fmt values (fp32 holds them exactly)
    values.view(-1)[a.numel()] = fmt.max * (1 + fmt.eps / 4)  # just over max: rounds down to max
    values.view(-1)[a.numel() + 1] = fmt.min_subnormal / 2  # halfway to zero: rounds to +0
    return (FP32.round(values),)


def _scaled_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Values in fmt and a power-of-two fp32 scale (as every mpx loss scaler keeps it)."""
    shape = (7, 13) if input_class == "odd-shape" else _SHAPE
    exponent = int(torch.randint(-12, 17, (), generator=generator))
    x = gen.with_specials(fmt, shape, generator) if input_class == "special" else gen.normal(fmt, shape, generator)
    return x, torch.tensor(2.0**exponent, dtype=torch.float64)


def _unscale_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    x, scale = _scaled_inputs(fmt, input_class, generator)
    return x, 1 / scale


def _check_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """normal: all finite (flag 0); special: subnormals and +-max plus one inf or NaN (flag 1)."""
    shape = (7, 13) if input_class == "odd-shape" else _SHAPE
    x = gen.normal(fmt, shape, generator)
    if input_class == "special":
        finite = gen.special_values(fmt)
        x = gen.plant(x, finite[torch.isfinite(finite)], generator)
        culprit = float("inf") if fmt.has_inf and bool(torch.rand((), generator=generator) < 0.5) else float("nan")
        x.view(-1)[int(torch.randint(0, x.numel(), (), generator=generator))] = culprit
    return (x,)


def _update_inputs(
    fmt: Format, input_class: InputClass, generator: torch.Generator, moments: int
) -> tuple[torch.Tensor, ...]:
    """masters, grads, moments; normal: finite grads, found_inf = 0; special: inf/NaN in grads, found_inf = 1."""
    master = gen.normal(FP32, _SHAPE, generator)
    grad = gen.normal(fmt, _SHAPE, generator, scale=0.5)
    state = [gen.normal(FP32, _SHAPE, generator, scale=0.1)]
    if moments == 2:
        state.append(FP32.round(gen.uniform(FP32, _SHAPE, generator, 0.0, 0.01)))
    found_inf = torch.tensor(0.0, dtype=torch.float64)
    if input_class == "special":
        grad = gen.plant(grad, gen.special_values(fmt), generator)
        found_inf = torch.tensor(1.0, dtype=torch.float64)
    return (master, grad, *state, found_inf)


def _identity(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x,)


def _scale(x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x * scale,)


def _nonfinite_check(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return ((~torch.isfinite(x)).any().to(x.dtype),)


def _sgd(
    master: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor,
    found_inf: torch.Tensor,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> tuple[torch.Tensor, ...]:
    direction = grad + weight_decay * master
    buffer = momentum * momentum_buffer + direction
    updated = master - lr * buffer
    skip = found_inf != 0
    return torch.where(skip, master, updated), torch.where(skip, momentum_buffer, buffer)


def _sgd_terms(
    master: torch.Tensor,
    grad: torch.Tensor,
    momentum_buffer: torch.Tensor,
    found_inf: torch.Tensor,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> tuple[torch.Tensor, ...]:
    buffer = momentum * momentum_buffer.abs() + grad.abs() + weight_decay * master.abs()
    live = (found_inf == 0).to(master.dtype)  # a skipped step must be exact
    return live * (2 * master.abs() + 5 * lr * buffer), live * 3 * buffer


def _adam(
    master: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    found_inf: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
) -> tuple[torch.Tensor, ...]:
    avg = beta1 * exp_avg + (1 - beta1) * grad
    avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    denominator = torch.sqrt(avg_sq / (1 - beta2**step)) + eps
    updated = master * (1 - lr * weight_decay) - lr * (avg / (1 - beta1**step)) / denominator
    skip = found_inf != 0
    return torch.where(skip, master, updated), torch.where(skip, exp_avg, avg), torch.where(skip, exp_avg_sq, avg_sq)


def _adam_terms(
    master: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    found_inf: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
) -> tuple[torch.Tensor, ...]:
    avg = beta1 * exp_avg.abs() + (1 - beta1) * grad.abs()
    avg_sq = beta2 * exp_avg_sq.abs() + (1 - beta2) * grad * grad
    denominator = torch.sqrt(avg_sq / (1 - beta2**step)) + eps
    update = lr * avg / (1 - beta1**step) / denominator
    live = (found_inf == 0).to(master.dtype)  # a skipped step must be exact
    return live * (3 * master.abs() + 13 * update), live * 3 * avg, live * 4 * avg_sq


def _sgd_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    return _update_inputs(fmt, input_class, generator, moments=1)


def _adam_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    return _update_inputs(fmt, input_class, generator, moments=2)


_CLASSES = ("normal", "special", "odd-shape", *SPECIAL_VALUE_CLASSES)
_FLAG = Arg("found_inf", role="fp32", differentiable=False)


def _exact(
    name: str, args: tuple[Arg, ...], reference: Reference, make_inputs: InputMaker, doc: str, **fields: Any
) -> OpSpec:
    """A single-rounding precision op: bit-exact, no backward unless `fields` say otherwise."""
    fields = {"has_backward": False, **fields}
    return OpSpec(
        name, "precision", args, reference, make_inputs, EXACT, "promote", input_classes=_CLASSES, doc=doc, **fields
    )


def _master_update(
    name: str,
    moments: tuple[str, ...],
    reference: Reference,
    make_inputs: InputMaker,
    terms: Terms,
    attrs: Mapping[str, float],
    doc: str,
) -> OpSpec:
    """An fp32 optimizer step on masters and `moments` from a low-precision grad, skipped when found_inf != 0."""
    return OpSpec(
        name,
        "precision",
        (Arg("master", role="fp32"), Arg("grad"), *(Arg(m, role="fp32") for m in moments), _FLAG),
        reference,
        make_inputs,
        ACCUMULATED,
        "promote",
        has_backward=False,
        input_classes=("normal", "special", "sequence"),
        attrs=attrs,
        output_roles=("fp32",) * (1 + len(moments)),
        magnitude=first_order(terms),
        doc=doc,
    )


SPECS: tuple[OpSpec, ...] = (
    _exact(
        "cast",
        (Arg("x", role="fp32"),),
        _identity,
        _fp32_source,
        "fp32 -> the case's format, round to nearest even (the output rounding is the whole op)",
        has_backward=True,
    ),
    _exact(
        "scale",
        (Arg("x"), Arg("scale", role="fp32", differentiable=False)),
        _scale,
        _scaled_inputs,
        "x * scale for a power-of-two fp32 scale (loss scaling), in x's format",
    ),
    _exact(
        "unscale",
        (Arg("grad"), Arg("inv_scale", role="fp32", differentiable=False)),
        _scale,
        _unscale_inputs,
        "grad * inv_scale computed in fp32 (one rounding), an fp32 gradient",
        output_roles=("fp32",),
    ),
    _exact(
        "nonfinite_check",
        (Arg("x", differentiable=False),),
        _nonfinite_check,
        _check_inputs,
        "found_inf: a 0-dim fp32 1.0 if any element is inf or NaN, else 0.0",
        output_roles=("fp32",),
    ),
    _master_update(
        "sgd_master_update",
        ("momentum_buffer",),
        _sgd,
        _sgd_inputs,
        _sgd_terms,
        SGD,
        "SGD with momentum and weight decay on fp32 masters, skipped (inputs returned) when found_inf != 0",
    ),
    _master_update(
        "adam_master_update",
        ("exp_avg", "exp_avg_sq"),
        _adam,
        _adam_inputs,
        _adam_terms,
        ADAM,
        "AdamW step (bias-corrected) on fp32 masters and moments, skipped (inputs returned) when found_inf != 0",
    ),
    _exact(
        "cast_back",
        (Arg("master", role="fp32"),),
        _identity,
        _fp32_source,
        "fp32 master weights -> the parameters' format (one rounding)",
    ),
)
