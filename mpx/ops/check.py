"""Running one conformance case: prepare inputs, compute the expected outputs, compare a backend's outputs.

Reference = float64 math on the inputs as stored in the case's format, then ONE rounding to each
output's format (Format.round is a single rounding from float64). The error of a result is
|got - want| / ulp(want) in that format. The bound an output must meet:

    exact / ulps tolerance:     |got - want| <= ulps * ulp(want)
    accumulation tolerance:     |got - want| <= ulps * ulp(want) + n * (2**-24 * magnitude + eta)

where magnitude = sum(|terms|) behind the element (see magnitude.py; for non-linear ops it is the whole
first-order error coefficient of the fp32 algorithm and n = 1), n = the length of its fp32 rounding chain
(the reduction length for GEMMs and sums) and eta the absolute error fp32 underflow may add per rounding
(2**-150; 2**-126 when the backend flushes subnormals). An element whose terms are all zero must be exact.
NaN must match NaN; +-inf must match the same infinity; any non-finite mismatch is an error of inf ULPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import OpError
from ..formats import FP32, Format, Overflow, Subnormals
from .magnitude import Magnitude, lengths
from .spec import Arg, InputClass, OpSpec, Pass

_U = 2.0**-24
_ETA = {"keep": 2.0**-150, "flush": 2.0**-126}


@dataclass(frozen=True)
class Prepared:
    """The inputs of one case: float64 values (representable in their formats) and the stored tensors."""

    inputs: tuple[torch.Tensor, ...]
    storage_inputs: tuple[torch.Tensor, ...]
    grad_outputs: tuple[torch.Tensor, ...] | None = None
    storage_grad_outputs: tuple[torch.Tensor, ...] | None = None


@dataclass(frozen=True)
class Comparison:
    """Whether a backend's outputs meet the op's tolerance, the worst error in ULPs and a readable detail."""

    passed: bool
    max_error_ulp: float
    detail: str


def arg_format(arg: Arg, fmt: Format) -> Format:
    """The format an argument (and its gradient) is stored in."""
    return FP32 if arg.role == "fp32" else fmt


def result_formats(op: OpSpec, fmt: Format, pass_: Pass) -> tuple[Format, ...]:
    """The format of each result: the outputs' formats (forward) or the differentiable args' formats (backward)."""
    if pass_ == "forward":
        return op.output_formats(fmt)
    return tuple(arg_format(op.args[i], fmt) for i in op.differentiable_args)


def prepare(op: OpSpec, fmt: Format, input_class: InputClass, pass_: Pass, seed: int = 0) -> Prepared:
    """Generate the inputs of a case (and, for backward, gradients of the outputs) deterministically from `seed`."""
    _check_case(op, fmt, input_class, pass_)
    generator = torch.Generator().manual_seed(seed)
    inputs = tuple(op.make_inputs(fmt, input_class, generator))
    storage = op.to_storage(fmt, inputs)
    if pass_ == "forward":
        return Prepared(inputs, storage)
    with torch.no_grad():
        outputs = op.reference(*inputs, **op.attrs)
    formats = op.output_formats(fmt)
    grads = tuple(
        f.round(torch.randn(out.shape, generator=generator, dtype=torch.float64))
        for out, f in zip(outputs, formats, strict=False)
    )
    storage_grads = tuple(g.to(f.torch_dtype) for g, f in zip(grads, formats, strict=False))
    return Prepared(inputs, storage, grads, storage_grads)


def expected(
    op: OpSpec,
    fmt: Format,
    prepared: Prepared,
    pass_: Pass,
    overflow: Overflow = "inf",
    subnormals: Subnormals = "keep",
) -> tuple[torch.Tensor, ...]:
    """The float64 reference, rounded once to each result's format with the given overflow/subnormal semantics.

    subnormals="flush" also treats subnormal inputs as zero (DAZ), as flushing hardware does.
    """
    inputs = flush_inputs(op, fmt, prepared.inputs, subnormals)
    formats = result_formats(op, fmt, pass_)
    if pass_ == "forward":
        with torch.no_grad():
            results = op.reference(*inputs, **op.attrs)
    else:
        if prepared.grad_outputs is None:
            raise OpError(f"{op.name} backward needs a Prepared made with pass_='backward'")
        grad_outputs = tuple(
            flush(g, f, subnormals) for g, f in zip(prepared.grad_outputs, op.output_formats(fmt), strict=False)
        )
        results = reference_backward(op, inputs, grad_outputs)
    return tuple(
        f.round(r.to(torch.float64), overflow=overflow, subnormals=subnormals)
        for r, f in zip(results, formats, strict=False)
    )


def reference_backward(
    op: OpSpec, inputs: tuple[torch.Tensor, ...], grad_outputs: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    """Gradients of the differentiable args: autograd through `op.reference` (in the inputs' dtype)."""
    return vjp(op.reference, op.differentiable_args, inputs, grad_outputs, op.attrs)


def vjp(function, differentiable, inputs, grad_outputs, attrs) -> tuple[torch.Tensor, ...]:
    """Vector-Jacobian product of `function(*inputs, **attrs)` for the args at `differentiable`."""
    leaves = [
        t.detach().clone().requires_grad_(i in differentiable) if t.is_floating_point() else t
        for i, t in enumerate(inputs)
    ]
    with torch.enable_grad():
        outputs = function(*leaves, **attrs)
        pairs = [(o, g.to(o.dtype)) for o, g in zip(outputs, grad_outputs, strict=False) if o.requires_grad]
        wanted = [leaves[i] for i in differentiable]
        grads = (
            torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
            if pairs
            else [None] * len(wanted)
        )
    return tuple(torch.zeros_like(w) if g is None else g.detach() for g, w in zip(grads, wanted, strict=False))


def flush_inputs(
    op: OpSpec, fmt: Format, inputs: tuple[torch.Tensor, ...], subnormals: Subnormals
) -> tuple[torch.Tensor, ...]:
    """Inputs with subnormals of their own format read as zero when flushing (float/int/bool args pass through)."""
    return tuple(
        flush(t, arg_format(a, fmt), subnormals) if t.is_floating_point() else t
        for a, t in zip(op.args, inputs, strict=False)
    )


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
    bounds = _bounds(op, formats, want, prepared, pass_, subnormals)
    worst, failures = 0.0, []
    for index, (g, w, f, bound) in enumerate(zip(got, want, formats, bounds, strict=False)):
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


def _errors(
    got: torch.Tensor, want: torch.Tensor, fmt: Format, bound: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    finite = torch.isfinite(want)
    nan_mismatch = got.isnan() != want.isnan()
    inf_mismatch = torch.isinf(want) & (got != want)
    finite_mismatch = finite & ~torch.isfinite(got)
    difference = torch.where(finite & torch.isfinite(got), (got - want).abs(), torch.zeros_like(want))
    error = difference / fmt.ulp(torch.where(finite, want, torch.zeros_like(want)))
    nonfinite = nan_mismatch | inf_mismatch | finite_mismatch
    error = torch.where(nonfinite, torch.full_like(error, float("inf")), error)
    bad = nonfinite | (difference > bound)
    return error, bad


def _bounds(op, formats, want, prepared, pass_, subnormals) -> list[torch.Tensor]:
    ulp_bounds = [
        op.tolerance.ulps * f.ulp(torch.where(torch.isfinite(w), w, torch.zeros_like(w)))
        for w, f in zip(want, formats, strict=False)
    ]
    if not op.tolerance.accumulation:
        return ulp_bounds
    magnitudes, ns = accumulation_terms(op, prepared, pass_)
    bounds = []
    for w, ulp_bound, magnitude, n in zip(want, ulp_bounds, magnitudes, ns, strict=False):
        magnitude = torch.broadcast_to(magnitude.to(torch.float64), w.shape)
        rounding = n * (_U * magnitude + _ETA[subnormals])
        bound = torch.where(torch.isfinite(magnitude), ulp_bound + rounding, ulp_bound)
        bounds.append(torch.where(magnitude == 0, torch.zeros_like(bound), bound))
    return bounds


def accumulation_terms(op: OpSpec, prepared: Prepared, pass_: Pass) -> tuple[tuple[torch.Tensor, ...], tuple[int, ...]]:
    """sum(|terms|) and n of each result, from the op's Magnitude."""
    magnitude = op.magnitude
    if not isinstance(magnitude, Magnitude):
        raise OpError(
            f"op {op.name!r}: accumulation tolerance needs an ops.magnitude.Magnitude, not {type(magnitude).__name__}"
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


def flush(t: torch.Tensor, fmt: Format, subnormals: Subnormals) -> torch.Tensor:
    """t with values below fmt's smallest normal read as (signed) zero when flushing."""
    if subnormals == "keep":
        return t
    return t * (t.abs() >= fmt.min_normal)


def _check_case(op: OpSpec, fmt: Format, input_class: InputClass, pass_: Pass) -> None:
    if pass_ not in ("forward", "backward"):
        raise OpError(f"pass must be 'forward' or 'backward', not {pass_!r}")
    if pass_ == "backward" and not op.has_backward:
        raise OpError(f"op {op.name!r} has no backward pass")
    if input_class not in op.input_classes:
        raise OpError(f"op {op.name!r} has no {input_class!r} inputs; its input classes: {', '.join(op.input_classes)}")
    if not op.supports_format(fmt):
        raise OpError(f"op {op.name!r} is not defined in {fmt.name}")
