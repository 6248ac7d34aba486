"""Telling `downcast` from `fail`: does a narrower format than the case asked explain a failing result?

Some devices silently compute a wider format in a narrower one (CPU EPs running fp32 MatMul on bf16 units,
GPUs using TF32 for fp32 GEMMs). Their results fail the asked format's tolerance, yet they are not wrong
numbers: they are the right numbers of a narrower format. For each narrower format (tf32, fp16, bf16), the
float64 reference is recomputed on the inputs rounded to it -- all of them, or all but one (a bias that stays
fp32) -- and the result is judged against it under the op's own bound. A narrow accumulation is not guessed
at: its bound would be loose enough to excuse wrong numbers, which must stay `fail`.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mpx.formats import BF16, FP16, FP32, Format, Overflow, Subnormals
from mpx.ops import OpSpec
from mpx.ops.reference import Prepared, arg_format, expected, result_formats
from mpx.ops.tolerance import bounds

TF32 = replace(FP32, name="tf32", mantissa_bits=10, aliases=())  # fp32's range, 10 mantissa bits (RNE)
NARROWER: tuple[Format, ...] = (TF32, FP16, BF16)


def narrower_formats(fmt: Format) -> list[Format]:
    """The formats with fewer mantissa bits than `fmt` that a device may silently compute it in."""
    return [narrow for narrow in NARROWER if narrow.mantissa_bits < fmt.mantissa_bits and narrow != fmt]


def explain(
    op: OpSpec,
    fmt: Format,
    got: tuple[torch.Tensor, ...],
    prepared: Prepared,
    pass_: str,
    overflow: Overflow = "inf",
    subnormals: Subnormals = "keep",
) -> str:
    """'computed as bf16: ...' when inputs rounded to a narrower format explain `got`, else ''.

    Among several formats that explain it, the one whose reference lies closest to the result is named.
    """
    needed: dict[str, float] = {}
    for narrow in narrower_formats(fmt):
        for keep in _kept_args(op, fmt):
            rounded = _round_inputs(op, fmt, prepared, narrow, keep)
            try:
                want = expected(op, fmt, rounded, pass_, overflow=overflow, subnormals=subnormals)
                allowed = bounds(op, result_formats(op, fmt, pass_), want, rounded, pass_, subnormals)
            except Exception:  # a reference that cannot take the rounded inputs explains nothing
                continue
            needed[narrow.name] = min(needed.get(narrow.name, float("inf")), _needed_scale(got, want, allowed))
    explaining = [name for name, scale in needed.items() if scale <= 1.0]
    if not explaining:
        return ""
    best = min(explaining, key=lambda name: needed[name])
    also = [name for name in explaining if name != best]
    too = f" ({', '.join(also)} explains it too)" if also else ""
    return f"computed as {best}{too}: inputs rounded to {best} give the result within the {fmt.name} bound"


def _kept_args(op: OpSpec, fmt: Format) -> list[int | None]:
    """Which arg stays unrounded: none, or (ops of several float args) each one in turn."""
    stored = [i for i, arg in enumerate(op.args) if arg_format(arg, fmt) == fmt]
    return [None, *stored] if len(stored) > 1 else [None]


def _round_inputs(op: OpSpec, fmt: Format, prepared: Prepared, narrow: Format, keep: int | None) -> Prepared:
    """The case's inputs (but arg `keep`) and output gradients stored in `fmt`, rounded to `narrow`."""
    inputs = tuple(
        narrow.round(t) if t.is_floating_point() and arg_format(arg, fmt) == fmt and i != keep else t
        for i, (arg, t) in enumerate(zip(op.args, prepared.inputs, strict=False))
    )
    grads = prepared.grad_outputs
    if grads is not None:
        formats = op.output_formats(fmt)
        grads = tuple(narrow.round(g) if f == fmt else g for g, f in zip(grads, formats, strict=False))
    return Prepared(inputs, prepared.storage_inputs, grads, prepared.storage_grad_outputs)


def _needed_scale(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...], allowed: list[torch.Tensor]) -> float:
    """The smallest factor of the bounds that admits every element (inf for a non-finite or shape mismatch)."""
    worst = 0.0
    for g, w, bound in zip(got, want, allowed, strict=False):
        g = g.detach().to("cpu", torch.float64)
        if tuple(g.shape) != tuple(w.shape):
            return float("inf")
        finite = torch.isfinite(g) & torch.isfinite(w)
        same = (g == w) | (g.isnan() & w.isnan())
        if not bool((finite | same).all()):
            return float("inf")
        difference = torch.where(finite, (g - w).abs(), torch.zeros_like(w))
        zero = torch.zeros_like(difference)
        ratio = torch.where(
            bound > 0, difference / bound.clamp(min=1e-300), torch.where(difference > 0, zero + float("inf"), zero)
        )
        if ratio.numel():
            worst = max(worst, float(ratio.max()))
    return worst
