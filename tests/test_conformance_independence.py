"""A case's status and error do not depend on what ran before it (in the process, the worker or the cache)."""

from __future__ import annotations

import torch
from conformance_helpers import full_cpu_run

from mpx.backends.cpu.backend import CpuBackend
from mpx.conformance.cases import generate, parse_case_id
from mpx.conformance.report import Report
from mpx.conformance.runner import ReferenceCache, run_cases


def _key(result):
    return result.status, result.max_error_ulp


def test_a_case_run_alone_gets_what_it_got_in_the_full_run():
    (backend,) = Report.load(full_cpu_run()["json"]).backends
    full = {case.id: case for case in backend.cases if not case.id.startswith("model/")}
    sample = [case_id for index, case_id in enumerate(full) if index % 5 == 0 or case_id.endswith("/sequence")]
    assert len(sample) > 200
    for case_id in sample:  # as `mpx conformance --case ID` runs it: a new backend, cache and process state
        (alone,) = run_cases(CpuBackend(), [parse_case_id(case_id)], cache=ReferenceCache())
        assert _key(alone) == _key(full[case_id]), case_id


def test_the_order_of_the_cases_changes_no_result():
    cases = generate(ops=["nonfinite_check", "adam_master_update", "sgd_master_update", "matmul", "unscale"])
    forward = {r.id: _key(r) for r in run_cases(CpuBackend(), cases)}
    backward = {r.id: _key(r) for r in run_cases(CpuBackend(), list(reversed(cases)))}
    assert forward == backward


class _Scribbler(CpuBackend):
    """Writes NaN into every float input it is given (and changes torch's defaults) after computing."""

    name = "scribbler"

    def _run(self, op, fmt, inputs, pass_, grad_outputs):
        results = super()._run(op, fmt, inputs, pass_, grad_outputs)
        for tensor in (*inputs, *(grad_outputs or ())):
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        return results


def test_a_backend_that_writes_into_its_inputs_leaks_nothing_into_later_cases():
    cases = generate(ops=["matmul", "add", "nonfinite_check", "layer_norm", "cast_back"])
    cache = ReferenceCache()  # shared, as between the backends of one run and the cases of one worker
    assert all(r.status.passes for r in run_cases(_Scribbler(), cases, cache=cache))
    assert torch.get_default_dtype() is torch.float32 and torch.is_grad_enabled()
    after = run_cases(CpuBackend(), cases, cache=cache)
    assert all(r.status.passes for r in after), [r.id for r in after if not r.status.passes]
