"""Making the accuracy tables: one backend call per element-wise op, format and pass on the whole sweep.

The reference is the float64 op (mpx.ops.reference) on the same stored inputs, read as the backend reads them
(flushed when it flushes), rounded once to the result's format under the backend's overflow / subnormal
semantics. The backward runs with every output gradient 1, so its result is the derivative itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from mpx.formats import Format
from mpx.formats import format as lookup_format
from mpx.ops import all_ops, get_op
from mpx.ops.reference import flush, flush_inputs, reference_backward, result_formats
from mpx.ops.registry import op_family
from mpx.ops.spec import OpSpec, Pass
from mpx.plugins import Backend

from .accuracy_tables import AccuracyTables, TableRow
from .accuracy_tables_sweep import distances, is_exhaustive, show, sweep_inputs, table_formats
from .tolerance_profiles import DEFAULT_PROFILE, Profile, get_profile, within


def elementwise_ops(names: Iterable[str] = ()) -> list[OpSpec]:
    """The element-wise ops (the 'elementwise' family), those among `names` when given."""
    wanted = set(names)
    return [op for op in all_ops() if op_family(op) == "elementwise" and (not wanted or op.name in wanted)]


Planned = tuple[OpSpec, Format, Pass]


def plan(ops: Sequence[OpSpec | str] | None = None, formats: Sequence[Format | str] | None = None) -> list[Planned]:
    """The rows to make, in report order: op x format x pass (default: every element-wise op, fp16/bf16/fp32)."""
    op_list = elementwise_ops() if ops is None else [get_op(op) for op in ops]
    fmt_list = [lookup_format(f) for f in (table_formats() if formats is None else formats)]
    passes: tuple[Pass, ...] = ("forward", "backward")
    return [
        (op, fmt, pass_)
        for op in op_list
        for fmt in fmt_list
        for pass_ in passes
        if pass_ == "forward" or op.has_backward
    ]


def measure_backend(
    backend: Backend,
    ops: Sequence[OpSpec | str] | None = None,
    formats: Sequence[Format | str] | None = None,
    profile: Profile | str = DEFAULT_PROFILE,
    chunk: int | None = None,
) -> AccuracyTables:
    """The accuracy tables of `backend` in this process (see plan for the defaults)."""
    start = time.perf_counter()
    chosen = get_profile(profile)
    rows = [measure(backend, op, fmt, pass_, chosen, chunk) for op, fmt, pass_ in plan(ops, formats)]
    return AccuracyTables(chosen.name, rows, time.perf_counter() - start)


def measure(
    backend: Backend, op: OpSpec, fmt: Format, pass_: Pass, profile: Profile, chunk: int | None = None
) -> TableRow:
    """One row; never raises: a backend that cannot run it or fails gives an 'unsupported' / 'error' row."""
    start = time.perf_counter()
    base = {"op": op.name, "pass_": pass_, "format": fmt.name, "exhaustive": is_exhaustive(fmt)}
    storage = sweep_inputs(op, fmt)
    if isinstance(storage, str):
        return TableRow(**base, status="unsupported", detail=storage)
    inputs = tuple(t.to(torch.float64) if t.is_floating_point() else t for t in storage)
    shapes = tuple(tuple(t.shape) for t in storage)
    try:
        support = backend.support(op, fmt, pass_, shapes)
    except Exception as error:
        return TableRow(**base, status="error", detail=f"support() raised {_describe(error)}")
    if not support.runs:
        reason = support.reason or f"{backend.name} does not run {op.name} {pass_} in {fmt.name}"
        return TableRow(**base, status="unsupported", detail=reason, support=support.status)
    grads = tuple(torch.ones(inputs[0].shape, dtype=torch.float64) for _ in op.output_formats(fmt))
    try:
        got = _run(backend, op, fmt, pass_, storage, grads, chunk)
    except Exception as error:
        return TableRow(**base, status="error", detail=_describe(error), support=support.status)
    formats = result_formats(op, fmt, pass_)
    problem = _contract_problem(got, formats, shapes[0])
    if problem:
        return TableRow(**base, status="error", detail=problem, support=support.status)
    try:
        return _row(base, op, fmt, pass_, inputs, grads, got, backend, profile, support.status, start)
    except Exception as error:
        detail = f"comparing with the reference failed: {_describe(error)}"
        return TableRow(**base, status="error", detail=detail, support=support.status)


def _row(
    base: dict[str, Any],
    op: OpSpec,
    fmt: Format,
    pass_: Pass,
    inputs: tuple[torch.Tensor, ...],
    grads: tuple[torch.Tensor, ...],
    got: tuple[torch.Tensor, ...],
    backend: Backend,
    profile: Profile,
    support: str,
    start: float,
) -> TableRow:
    """The measured row: distances of every result from the reference, the worst one and the profile's verdict."""
    formats = result_formats(op, fmt, pass_)
    exact = _reference(op, fmt, pass_, inputs, grads, backend.subnormals)
    rounded_all, exact_all = [], []
    for g, e, f in zip(got, exact, formats, strict=True):
        want = f.round(e, overflow=backend.overflow, subnormals=backend.subnormals)
        rounded, fractional = distances(g.detach().to("cpu"), want, e, f)
        rounded_all.append(rounded)
        exact_all.append(fractional)
    rounded, fractional = torch.stack(rounded_all), torch.stack(exact_all)
    max_ulp, max_exact = float(rounded.max()), float(fractional.max())
    worst = int(rounded.argmax()) if max_ulp > 0 else int(fractional.argmax())
    result, element = divmod(worst, rounded.shape[1])
    want = formats[result].round(exact[result], overflow=backend.overflow, subnormals=backend.subnormals)
    return TableRow(
        **base,
        status="measured",
        inputs=inputs[0].numel(),
        max_ulp=max_ulp,
        max_ulp_exact=max_exact,
        not_correctly_rounded=int((rounded > 0).sum()),
        worst_input=tuple(show(t[element]) for t in inputs if t.is_floating_point()),
        worst_got=show(got[result].reshape(-1)[element]),
        worst_want=show(want[element]),
        support=support,
        limit=profile.limit(op.name, pass_),
        within=within(profile, op.name, pass_, max_ulp, max_exact),
        time_s=time.perf_counter() - start,
        detail=f"worst in result {result} of {len(formats)}" if len(formats) > 1 else "",
    )


def _run(
    backend: Backend,
    op: OpSpec,
    fmt: Format,
    pass_: Pass,
    storage: tuple[torch.Tensor, ...],
    grads: tuple[torch.Tensor, ...],
    chunk: int | None,
) -> tuple[torch.Tensor, ...]:
    """The backend's results on the whole sweep: one call, or one per `chunk` values, concatenated."""
    storage_grads = tuple(g.to(f.torch_dtype) for g, f in zip(grads, op.output_formats(fmt), strict=True))
    n = storage[0].numel()
    step = n if not chunk or chunk >= n else chunk
    parts = []
    for begin in range(0, n, step):
        piece = tuple(t[begin : begin + step] for t in storage)
        grad_piece = tuple(g[begin : begin + step] for g in storage_grads) if pass_ == "backward" else None
        parts.append(tuple(backend.run(op, fmt, piece, pass_, grad_piece)))
    return tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))


def _reference(
    op: OpSpec, fmt: Format, pass_: Pass, inputs: tuple[torch.Tensor, ...], grads: tuple[torch.Tensor, ...], sub: Any
) -> tuple[torch.Tensor, ...]:
    """The float64 results before rounding (inputs read as the backend reads them: flushed when it flushes)."""
    values = flush_inputs(op, fmt, inputs, sub)
    with torch.no_grad():
        if pass_ == "forward":
            return tuple(r.to(torch.float64) for r in op.reference(*values, **op.attrs))
    grads = tuple(flush(g, f, sub) for g, f in zip(grads, op.output_formats(fmt), strict=True))
    return tuple(r.to(torch.float64) for r in reference_backward(op, values, grads))


def _contract_problem(got: Any, formats: tuple[Format, ...], shape: tuple[int, ...]) -> str:
    """What is wrong with a backend's answer (count, type, shape, dtype), or ''."""
    if not isinstance(got, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in got):
        return f"run() must return a tuple of tensors, got {type(got).__name__}"
    if len(got) != len(formats):
        return f"run() returned {len(got)} results, expected {len(formats)}"
    for index, (tensor, fmt) in enumerate(zip(got, formats, strict=True)):
        if tuple(tensor.shape) != shape or tensor.dtype != fmt.torch_dtype:
            return f"result {index} is {tensor.dtype} {tuple(tensor.shape)}, expected {fmt.torch_dtype} {shape}"
    return ""


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip()[:2000]
