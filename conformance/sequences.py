"""Stateful cases: an optimizer master update run as a sequence of steps on one optimizer.

`adam_master_update/<fmt>/forward/sequence` steps normal, skipped, normal, skipped, skipped (found_inf set on
the skipped ones, whose gradients hold inf and NaN). After every step it reads the weights, the moments and
(Adam) the step count back and checks them: a skipped step must leave all of them bit for bit as they were
and a normal step must advance the count by exactly one; the weights and moments of a normal step must meet
the op's tolerance against the reference computed from the backend's own state before the step, at the
step count the optimizer should have reached. A hidden step count advanced on a skipped step changes the
bias correction of the next normal step and the count itself: the case fails, whatever ran before it.

On a TrainingBackend the steps run through its `masked_step` on one torch optimizer (the state MixedPrecision
keeps); on a plain Backend through `run()`, each step's outputs fed into the next (its step count is the
op's fixed `step` attribute, so only the skips and the values are checked).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from mpx.formats import FP32, Format
from mpx.formats import format as lookup_format
from mpx.ops import OpSpec, get_op
from mpx.ops import inputs as gen
from mpx.ops.reference import Prepared, expected
from mpx.ops.tolerance import compare
from mpx.plugins import Backend, TrainingBackend

from .cases import Case
from .report import CaseResult
from .status import Status

SKIPS = (False, True, False, True, True)  # normal, skipped, normal, skipped twice
_SHAPE = (4, 8)


def sequence_inputs(op: OpSpec, fmt: Format, seed: int) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
    """The starting (master, *moments) in float64 and one gradient per step (inf / NaN in the skipped ones)."""
    generator = torch.Generator().manual_seed(seed)
    moments = len(op.args) - 3
    state = [gen.normal(FP32, _SHAPE, generator)] + [gen.normal(FP32, _SHAPE, generator, scale=0.1)]
    if moments == 2:
        state.append(gen.uniform(FP32, _SHAPE, generator, 0.0, 0.01))
    grads = []
    for skip in SKIPS:
        grad = gen.normal(fmt, _SHAPE, generator, scale=0.5)
        if skip:
            grad = gen.plant(grad, gen.special_values(fmt), generator)
            grad.view(-1)[0] = float("nan")
        grads.append(grad)
    return tuple(state), grads


class _Mismatch(Exception):
    """A step whose state is not what it must be."""


def run_sequence_case(backend: Backend, case: Case) -> CaseResult:
    """Run one optimizer sequence; never raises."""
    start = time.perf_counter()

    def result(status: Status, detail: str, error: float | None = None, support: str = "") -> CaseResult:
        elapsed = time.perf_counter() - start
        return CaseResult(
            case.id, case.op, case.format, case.pass_, case.input_class, status, error, detail, elapsed, support
        )

    try:
        op, fmt = get_op(case.op), lookup_format(case.format)
        support = backend.support(op, fmt, "forward", None)
    except Exception as error:
        return result(Status.ERROR, f"support() raised {type(error).__name__}: {error}")
    if not support.runs:
        return result(Status.UNSUPPORTED, support.reason or f"{backend.name} does not run {op.name} in {fmt.name}")
    try:
        state, grads = sequence_inputs(op, fmt, case.seed)
        steps = _protocol_steps if isinstance(backend, TrainingBackend) else _run_steps
        worst = steps(backend, op, fmt, state, grads)
    except _Mismatch as mismatch:
        return result(Status.FAIL, str(mismatch), None, support.status)
    except Exception as error:
        return result(Status.ERROR, f"{type(error).__name__}: {error}"[:2000], support=support.status)
    detail = f"{len(SKIPS)} steps (normal, skipped, normal, skipped, skipped): max error {worst:.3g} ULP"
    if support.status in (Status.UPCAST, Status.FALLBACK):
        return result(Status(support.status), support.reason, worst, support.status)
    return result(Status.PASS, detail, worst, support.status)


def _check_step(
    backend: Backend,
    op: OpSpec,
    fmt: Format,
    index: int,
    before: tuple[torch.Tensor, ...],
    grad: torch.Tensor,
    after: tuple[torch.Tensor, ...],
    count: int | None,
) -> float:
    """Check one step's state against `before`; returns its error in ULPs (raises _Mismatch when wrong)."""
    skip = SKIPS[index]
    label = f"step {index + 1} ({'skipped' if skip else 'normal'})"
    names = [op.args[0].name, *(a.name for a in op.args[2:-1])]
    if skip:
        for name, old, new in zip(names, before, after, strict=True):
            if not torch.equal(old.float(), new.float()):
                changed = int((old.float() != new.float()).sum())
                raise _Mismatch(f"{label}: {name} changed in {changed} elements; a skipped step changes nothing")
        return 0.0
    found_inf = torch.tensor(0.0, dtype=torch.float64)
    values = (before[0].double(), grad, *(t.double() for t in before[1:]), found_inf)
    step_op = op if count is None else dataclasses.replace(op, attrs={**op.attrs, "step": count})
    storage = step_op.to_storage(fmt, values)
    prepared = Prepared(values, storage)
    want = expected(step_op, fmt, prepared, "forward", backend.overflow, backend.subnormals)
    comparison = compare(step_op, fmt, after, want, prepared, "forward", subnormals=backend.subnormals)
    if not comparison.passed:
        at = f" at step count {count}" if count is not None else ""
        raise _Mismatch(f"{label}{at}: {comparison.detail}")
    return float(comparison.max_error_ulp)


def _protocol_steps(
    backend: Any, op: OpSpec, fmt: Format, state: tuple[torch.Tensor, ...], grads: list[torch.Tensor]
) -> float:
    """The steps through the backend's masked_step on one torch optimizer, read back after each."""
    from mpx.training.state_formats import FP32_STATE

    attrs = op.attrs
    param = state[0].to(torch.float32)
    adam = op.name == "adam_master_update"
    if adam:
        betas = (attrs["beta1"], attrs["beta2"])
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            [param], lr=attrs["lr"], betas=betas, eps=attrs["eps"], weight_decay=attrs["weight_decay"]
        )
        keys = ("exp_avg", "exp_avg_sq")
        optimizer.state[param]["step"] = torch.tensor(float(attrs["step"] - 1), dtype=torch.float32)
    else:
        optimizer = torch.optim.SGD(
            [param], lr=attrs["lr"], momentum=attrs["momentum"], weight_decay=attrs["weight_decay"]
        )
        keys = ("momentum_buffer",)
    live = optimizer.state[param]
    for key, value in zip(keys, state[1:], strict=True):
        live[key] = value.to(torch.float32)
    count = attrs["step"] - 1 if adam else None
    worst = 0.0
    for index, grad in enumerate(grads):
        before = (param.detach().clone(), *(live[key].detach().clone() for key in keys))
        skip = torch.tensor(SKIPS[index])
        backend.masked_step(optimizer, {param: grad.to(fmt.torch_dtype).float()}, skip, FP32_STATE)
        live = optimizer.state[param]
        after = (param.detach().clone(), *(live[key].detach().clone() for key in keys))
        if adam:
            expected_count = count if SKIPS[index] else count + 1
            got = float(live["step"])
            if got != expected_count:
                label = f"step {index + 1} ({'skipped' if SKIPS[index] else 'normal'})"
                raise _Mismatch(f"{label}: the optimizer's step count is {got:g}, expected {expected_count}")
            count = expected_count
        worst = max(worst, _check_step(backend, op, fmt, index, before, grad, after, count))
    return worst


def _run_steps(
    backend: Backend, op: OpSpec, fmt: Format, state: tuple[torch.Tensor, ...], grads: list[torch.Tensor]
) -> float:
    """The steps through run(), each step's outputs the next step's state (no step count to check)."""
    current = tuple(t.to(torch.float32) for t in state)
    worst = 0.0
    for index, grad in enumerate(grads):
        found_inf = torch.tensor(1.0 if SKIPS[index] else 0.0, dtype=torch.float32)
        inputs = (current[0].clone(), grad.to(fmt.torch_dtype), *(t.clone() for t in current[1:]), found_inf)
        after = tuple(t.detach().to(torch.float32) for t in backend.run(op, fmt, inputs, "forward", None))
        worst = max(worst, _check_step(backend, op, fmt, index, current, grad, after, None))
        current = after
    return worst
