"""Losses (fp32 under autocast; the loss itself is always fp32): mse_loss and softmax cross_entropy.

Bounds are first-order error coefficients of the fp32 algorithms in units of 2**-24 (n = 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...formats import Format, finite_or_zero
from .. import inputs as gen
from ..error_model import Terms, first_order, log_softmax_error, shift_error
from ..spec import ACCUMULATED, BASIC_CLASSES, SPECIAL_VALUE_CLASSES, Arg, InputClass, InputMaker, OpSpec, Reference

_MSE_SHAPES = {"normal": (8, 16), "special": (8, 16), "odd-shape": (7, 13), "long-reduction": (gen.LONG,)}
# (batch, classes): the long case is a 4096-way softmax
_CE_SHAPES = {"normal": (8, 10), "special": (8, 12), "odd-shape": (7, 13), "long-reduction": (4, gen.LONG)}


def _mse_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    shape = _MSE_SHAPES[input_class]
    pred = gen.with_specials(fmt, shape, generator) if input_class == "special" else gen.normal(fmt, shape, generator)
    return pred, gen.normal(fmt, shape, generator)


def _mse(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.mse_loss(pred, target),)


def _mse_forward_terms(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # d = pred - target, d*d, the sum of N terms, the division
    return (((pred - target) ** 2).mean() * (pred.numel() + 4),)


def _mse_backward_terms(inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    pred, target = inputs
    return (4 * (2 * (pred - target) / pred.numel() * grads[0]).abs(),)


def _ce_inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    batch, classes = _CE_SHAPES[input_class]
    shape = (batch, classes)
    logits = (
        gen.with_specials(fmt, shape, generator, 3.0)
        if input_class == "special"
        else gen.normal(fmt, shape, generator, 3.0)
    )
    return logits, torch.randint(0, classes, (batch,), generator=generator)


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.cross_entropy(logits, target),)


def _ce_forward_terms(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # mean over the batch of -log_softmax at the target: each term's own error, then the batch sum
    picked = log_softmax_error(logits).gather(1, target[:, None])[:, 0]
    terms = torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0].abs()
    terms = finite_or_zero(terms)
    return ((picked + terms * (logits.shape[0] + 2)).mean(),)


def _ce_backward_terms(inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    # d logits = (softmax - onehot) * g / batch
    logits, target = inputs
    y = torch.softmax(logits, dim=-1)
    onehot = F.one_hot(target, logits.shape[-1]).to(logits.dtype)
    return ((y * shift_error(logits) + y + onehot) * grads[0].abs() / logits.shape[0] * 3,)


def _loss(
    name: str,
    args: tuple[Arg, ...],
    reference: Reference,
    make_inputs: InputMaker,
    forward_terms: Terms,
    backward_terms: Terms,
    doc: str,
) -> OpSpec:
    """A loss: computed in fp32 under autocast, returned as an fp32 scalar."""
    return OpSpec(
        name,
        "loss",
        args,
        reference,
        make_inputs,
        ACCUMULATED,
        "fp32",
        input_classes=(*BASIC_CLASSES, *SPECIAL_VALUE_CLASSES),
        output_roles=("fp32",),
        magnitude=first_order(forward_terms, backward_terms),
        doc=f"{doc}, an fp32 scalar",
    )


SPECS: tuple[OpSpec, ...] = (
    _loss(
        "mse_loss",
        (Arg("pred"), Arg("target", differentiable=False)),
        _mse,
        _mse_inputs,
        _mse_forward_terms,
        _mse_backward_terms,
        "mean((pred - target)^2)",
    ),
    _loss(
        "cross_entropy",
        (Arg("logits"), Arg("target", role="index", differentiable=False)),
        _cross_entropy,
        _ce_inputs,
        _ce_forward_terms,
        _ce_backward_terms,
        "mean over the batch of -log_softmax(logits)[target]",
    ),
)
