"""Running one case on one backend: support -> prepare -> run -> reference -> compare -> a CaseResult."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from mpx.formats import format as lookup_format
from mpx.ops import get_op
from mpx.ops.reference import expected, prepare, result_formats
from mpx.ops.tolerance import compare
from mpx.plugins import Backend

from . import interrupts
from .cases import Case
from .report import CaseResult
from .status import Status

OnResult = Callable[[CaseResult], None]


class ReferenceCache:
    """Prepared inputs and references of the cases of one run, shared between the backends it measures.

    Inputs depend only on the case; references also on the overflow / subnormal semantics they are rounded under.
    """

    def __init__(self) -> None:
        self._prepared: dict[str, Any] = {}
        self._expected: dict[tuple[str, str, str], tuple[torch.Tensor, ...]] = {}
        self.models: dict[Any, Any] = {}  # fp32 loss curves and float64 outputs of the model cases

    def prepared(self, case: Case) -> Any:
        if case.id not in self._prepared:
            op, fmt = get_op(case.op), lookup_format(case.format)
            self._prepared[case.id] = prepare(op, fmt, case.input_class, case.pass_, case.seed)
        return self._prepared[case.id]

    def expected(self, case: Case, overflow: str, subnormals: str) -> tuple[torch.Tensor, ...]:
        key = (case.id, overflow, subnormals)
        if key not in self._expected:
            op, fmt = get_op(case.op), lookup_format(case.format)
            want = expected(op, fmt, self.prepared(case), case.pass_, overflow=overflow, subnormals=subnormals)
            self._expected[key] = want
        return self._expected[key]


def run_case(backend: Backend, case: Case, cache: ReferenceCache | None = None) -> CaseResult:
    """Run one case; never raises: whatever goes wrong becomes the case's status and detail.

    A case is independent of the ones before it: the backend gets copies of the cached inputs (what it writes
    into them reaches no later case or backend) and torch's default dtype and grad mode are restored after it.
    A backend that calls sys.exit() or raises KeyboardInterrupt itself gets an `error` for the case; only the
    user's own Ctrl-C (a SIGINT seen by interrupts.watch()) ends the run.
    """
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    start, interrupted = time.perf_counter(), interrupts.received()
    try:
        return _run_case(backend, case, cache)
    except (SystemExit, KeyboardInterrupt) as stop:
        if isinstance(stop, KeyboardInterrupt) and interrupts.received() > interrupted:
            raise
        raised = f"{type(stop).__name__}: {stop}" if str(stop) else type(stop).__name__
        detail = f"the backend raised {raised}; a backend must raise an exception, not stop the process"
        elapsed = time.perf_counter() - start
        return CaseResult(
            case.id, case.op, case.format, case.pass_, case.input_class, Status.ERROR, None, detail, elapsed
        )
    finally:
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)


def _run_case(backend: Backend, case: Case, cache: ReferenceCache | None) -> CaseResult:
    if case.is_semantics:
        from .semantics import run_semantic_case

        return run_semantic_case(backend, case)
    if case.input_class == "sequence":
        from .sequences import run_sequence_case

        return run_sequence_case(backend, case)
    cache = cache or ReferenceCache()
    if case.is_model:
        from .models import run_model_case

        return run_model_case(backend, case, cache.models)
    start = time.perf_counter()

    def result(status: Status, detail: str = "", error: float | None = None, support: str = "") -> CaseResult:
        elapsed = time.perf_counter() - start
        return CaseResult(
            case.id, case.op, case.format, case.pass_, case.input_class, status, error, detail, elapsed, support
        )

    op, fmt = get_op(case.op), lookup_format(case.format)
    try:  # the case's input shapes for support(); when preparing fails, it fails again below and says why
        shapes = tuple(tuple(t.shape) for t in cache.prepared(case).storage_inputs)
    except Exception:
        shapes = None
    try:
        support = backend.support(op, fmt, case.pass_, shapes)
    except Exception as error:
        return result(Status.ERROR, f"support() raised {_describe(error)}")
    if support.status == "unsupported":
        return result(
            Status.UNSUPPORTED,
            support.reason or f"{backend.name} does not run {case.op} in {case.format}",
            support="unsupported",
        )
    try:
        prepared = cache.prepared(case)
    except Exception as error:
        return result(Status.ERROR, f"preparing the inputs failed: {_describe(error)}", support=support.status)
    try:
        grads = prepared.storage_grad_outputs
        inputs = tuple(t.clone() for t in prepared.storage_inputs)
        got = backend.run(op, fmt, inputs, case.pass_, grads and tuple(g.clone() for g in grads))
    except Exception as error:
        return result(Status.ERROR, _describe(error), support=support.status)
    problem = _contract_problem(op, fmt, case.pass_, got)
    if problem:
        return result(Status.FAIL, problem, support=support.status)
    try:
        want = cache.expected(case, backend.overflow, backend.subnormals)
        comparison = compare(op, fmt, tuple(got), want, prepared, case.pass_, subnormals=backend.subnormals)
    except Exception as error:
        return result(Status.ERROR, f"comparing with the reference failed: {_describe(error)}", support=support.status)
    ulps = float(comparison.max_error_ulp)
    if not comparison.passed:
        effective = _downcast(op, fmt, tuple(got), prepared, case.pass_, backend)
        if effective:
            return result(Status.DOWNCAST, f"{effective}; as {fmt.name}: {comparison.detail}", ulps, support.status)
        return result(Status.FAIL, comparison.detail, ulps, support.status)
    if support.status in (Status.UPCAST, Status.FALLBACK):  # right numbers, not as asked: the case says so
        return result(Status(support.status), support.reason, ulps, support.status)
    detail = f"decomposed: {support.reason}" if support.status == "decomposed" and support.reason else comparison.detail
    return result(Status.PASS, detail, ulps, support.status)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Cases are small tensors: torch's intra-op threads cost more than they give, and badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_cases(
    backend: Backend, cases: Iterable[Case], on_result: OnResult | None = None, cache: ReferenceCache | None = None
) -> list[CaseResult]:
    """Run cases one after another in this process (with one intra-op thread, restored afterwards)."""
    cache = cache or ReferenceCache()
    results = []
    with one_thread(), interrupts.watch():
        for case in cases:
            outcome = run_case(backend, case, cache)
            results.append(outcome)
            if on_result:
                on_result(outcome)
    return results


def _contract_problem(op: Any, fmt: Any, pass_: str, got: Any) -> str:
    """What is wrong with the shape of a backend's answer (count, type, dtype), or ''."""
    if not isinstance(got, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in got):
        return f"run() must return a tuple of tensors, got {type(got).__name__}"
    want = [f.torch_dtype for f in result_formats(op, fmt, pass_)]
    what = "outputs" if pass_ == "forward" else "gradients"
    if len(got) != len(want):
        return f"run() returned {len(got)} {what}, expected {len(want)}"
    for index, (tensor, dtype) in enumerate(zip(got, want, strict=True)):
        if tensor.dtype != dtype and tensor.is_floating_point():
            return f"{what}[{index}] is {tensor.dtype}, the contract says {dtype}"
    return ""


def _downcast(op: Any, fmt: Any, got: tuple[torch.Tensor, ...], prepared: Any, pass_: str, backend: Backend) -> str:
    """'computed as <narrower format>: ...' when a narrower format explains a failing result, else ''."""
    from .downcast import explain

    try:
        return explain(op, fmt, got, prepared, pass_, backend.overflow, backend.subnormals)
    except Exception:  # the verdict stays `fail`: the comparison above already said what is wrong
        return ""


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip()[:2000]
