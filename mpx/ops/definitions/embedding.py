"""embedding: a gather of rows (exact); its backward sums the gradients of repeated indices."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...formats import Format
from .. import inputs as gen
from ..error_model import Magnitude
from ..spec import ACCUMULATED, BASIC_CLASSES, SPECIAL_VALUE_CLASSES, Arg, InputClass, OpSpec

# (rows, width, indices): long-reduction sends 4096 indices into 3 rows, so each row's gradient sums ~1365 terms
_SHAPES = {"normal": (32, 16, 24), "special": (16, 8, 32), "odd-shape": (13, 7, 11), "long-reduction": (3, 8, gen.LONG)}


def _inputs(fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    rows, width, count = _SHAPES[input_class]
    if input_class == "special":
        weight = gen.with_specials(fmt, (rows, width), generator)
    else:
        weight = gen.normal(fmt, (rows, width), generator)
    return weight, torch.randint(0, rows, (count,), generator=generator)


def _embedding(weight: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (F.embedding(index, weight),)


def _gather_is_exact(weight: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(index.shape + weight.shape[1:], dtype=torch.float64),)


def _scatter_terms(
    abs_inputs: tuple[torch.Tensor, ...], abs_grads: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    weight, index = abs_inputs
    return (torch.zeros_like(weight).index_add(0, index, abs_grads[0].to(weight.dtype)),)


def _repeats(weight: torch.Tensor, index: torch.Tensor) -> int:
    return int(torch.bincount(index).max())


SPECS: tuple[OpSpec, ...] = (
    OpSpec(
        "embedding",
        "model",
        (Arg("weight"), Arg("index", role="index", differentiable=False)),
        _embedding,
        _inputs,
        ACCUMULATED,
        "promote",
        input_classes=(*BASIC_CLASSES, *SPECIAL_VALUE_CLASSES),
        magnitude=Magnitude(_gather_is_exact, lambda weight, index: 1, _scatter_terms, _repeats),
        doc="rows of weight at index (exact); backward: gradients of repeated indices summed",
    ),
)
