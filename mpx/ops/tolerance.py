"""How close is close enough: a backend's results against the reference, under the op's tolerance.

The error of a result is |got - want| / ulp(want) in its format. The bound an output must meet:

    exact / ulps tolerance:     |got - want| <= ulps * ulp(want)
    accumulation tolerance:     |got - want| <= ulps * ulp(want) + f(n) * 2**-24 * magnitude + n * eta

where magnitude = sum(|terms|) behind the element (see error_model.py; for non-linear ops it is the whole
first-order error coefficient of the fp32 algorithm and n = 1), n = the length of its fp32 rounding chain
(the reduction length for GEMMs and sums), f(n) = error_model.sum_factor(n): n up to n = 100, then the
probabilistic ~8 * sqrt(n) (an honest fp32 sum exceeds it with probability under 2n * exp(-32)), and eta
the absolute error fp32 underflow may add per rounding (2**-150; 2**-126 when the backend flushes
subnormals). An element whose terms are all zero must be exact.

Why fp16 / bf16 accumulation cannot pass the accumulation-N cases: their terms are positive, so
magnitude = |result| and f(n) * 2**-24 * magnitude is at most 2**-14 * |result| for n <= 16384: under an
eighth of an fp16 ULP and a sixty-fourth of a bf16 ULP of the result. An fp16 / bf16 running sum rounds
to half an ULP of its partial sum at each addition, so over n / b additions of b-term blocks it drifts by
several ULPs of the result where the honest fp32 sum, rounded once, is within half an ULP.
NaN must match NaN; +-inf must match the same infinity; any non-finite mismatch is an error of inf ULPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import OpError
from ..formats import Format, Subnormals, finite_or_zero
from .error_model import Magnitude, lengths, sum_factor
from .reference import Prepared, result_formats, vjp
from .spec import OpSpec, Pass

_U = 2.0**-24
_ETA = {"keep": 2.0**-150, "flush": 2.0**-126}


@dataclass(frozen=True)
class Comparison:
    """Whether a backend's outputs meet the op's tolerance, the worst error in ULPs and a readable detail."""

    passed: bool
    max_error_ulp: float
    detail: str


def compare(
    op: OpSpec,
    fmt: Format,
    got: tuple[torch.Tensor, ...],
    want: tuple[torch.Tensor, ...],
    prepared: Prepared,
    pass_: Pass,
    *,
    subnormals: Subnormals = "keep",
) -> Comparison:
    """Compare a backend's results with `expected(...)` under the op's tolerance (see the module docstring)."""
    got, want = tuple(got), tuple(want)
    if len(got) != len(want):
        return Comparison(False, float("inf"), f"{op.name} {pass_}: {len(got)} results, expected {len(want)}")
    formats = result_formats(op, fmt, pass_)
    allowed = bounds(op, formats, want, prepared, pass_, subnormals)
    worst, failures = 0.0, []
    for index, (g, w, f, bound) in enumerate(zip(got, want, formats, allowed, strict=False)):
        if tuple(g.shape) != tuple(w.shape):
            return Comparison(False, float("inf"), f"result {index}: shape {tuple(g.shape)}, expected {tuple(w.shape)}")
        g = g.detach().to("cpu", torch.float64)
        error, bad = _errors(g, w, f, bound)
        if error.numel():
            worst = max(worst, float(error.max()))
        if bad.any():
            at = tuple(int(i) for i in bad.nonzero()[0])
            failures.append(
                f"result {index}{list(at)}: got {float(g[at])!r}, want {float(w[at])!r} "
                f"({float(error[at]):.3g} ULP of {f.name}, bound {float(bound[at] / f.ulp(w[at])):.3g}); "
                f"{int(bad.sum())} of {bad.numel()} elements out of bound"
            )
    if failures:
        return Comparison(False, worst, "; ".join(failures))
    return Comparison(True, worst, f"max error {worst:.3g} ULP within {describe_tolerance(op)}")


def describe_tolerance(op: OpSpec) -> str:
    """The op's tolerance rule in words."""
    tolerance = op.tolerance
    if tolerance.accumulation:
        return f"{tolerance.ulps:g} ULP + fp32 accumulation bound"
    return "exact" if tolerance.ulps == 0 else f"{tolerance.ulps:g} ULP"


def bounds(
    op: OpSpec,
    formats: tuple[Format, ...],
    want: tuple[torch.Tensor, ...],
    prepared: Prepared,
    pass_: Pass,
    subnormals: Subnormals,
) -> list[torch.Tensor]:
    """The largest |got - want| allowed per element of each result (see the module docstring)."""
    ulp_bounds = [op.tolerance.ulps * f.ulp(finite_or_zero(w)) for w, f in zip(want, formats, strict=False)]
    if not op.tolerance.accumulation:
        return ulp_bounds
    magnitudes, ns = accumulation_terms(op, prepared, pass_)
    result = []
    for w, ulp_bound, magnitude, n in zip(want, ulp_bounds, magnitudes, ns, strict=False):
        magnitude = torch.broadcast_to(magnitude.to(torch.float64), w.shape)
        rounding = sum_factor(n) * _U * magnitude + n * _ETA[subnormals]
        bound = torch.where(torch.isfinite(magnitude), ulp_bound + rounding, ulp_bound)
        result.append(torch.where(magnitude == 0, torch.zeros_like(bound), bound))
    return result


def accumulation_terms(op: OpSpec, prepared: Prepared, pass_: Pass) -> tuple[tuple[torch.Tensor, ...], tuple[int, ...]]:
    """sum(|terms|) and n of each result, from the op's Magnitude."""
    magnitude = op.magnitude
    if not isinstance(magnitude, Magnitude):
        raise OpError(
            f"op {op.name!r}: accumulation tolerance needs an mpx.ops.Magnitude, not {type(magnitude).__name__}"
        )
    inputs = prepared.inputs
    absolute = inputs if magnitude.signed else tuple(t.abs() if t.is_floating_point() else t for t in inputs)
    with torch.no_grad():
        if pass_ == "forward":
            terms = magnitude.forward(*absolute, **op.attrs)
            return tuple(terms), lengths(magnitude.forward_n(*inputs, **op.attrs), len(terms))
        abs_grads = tuple(g if magnitude.signed else g.abs() for g in prepared.grad_outputs)
        if magnitude.backward is None:
            terms = vjp(magnitude.forward, op.differentiable_args, absolute, abs_grads, op.attrs)
        else:
            terms = magnitude.backward(absolute, abs_grads, **op.attrs)
        n = (magnitude.backward_n or magnitude.forward_n)(*inputs, **op.attrs)
        return tuple(terms), lengths(n, len(terms))


def _errors(
    got: torch.Tensor, want: torch.Tensor, fmt: Format, bound: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each element's error in ULPs of `fmt` (inf for a non-finite mismatch) and whether it is out of bound."""
    finite = torch.isfinite(want)
    nan_mismatch = got.isnan() != want.isnan()
    inf_mismatch = torch.isinf(want) & (got != want)
    finite_mismatch = finite & ~torch.isfinite(got)
    difference = torch.where(finite & torch.isfinite(got), (got - want).abs(), torch.zeros_like(want))
    error = difference / fmt.ulp(finite_or_zero(want))
    nonfinite = nan_mismatch | inf_mismatch | finite_mismatch
    error = torch.where(nonfinite, torch.full_like(error, float("inf")), error)
    bad = nonfinite | (difference > bound)
    return error, bad
