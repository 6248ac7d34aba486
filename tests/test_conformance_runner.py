"""The runner: support -> prepare -> run -> reference -> compare, and every outcome mapped to a status."""

import torch

from mpx import Support
from mpx.backends.cpu.backend import CpuBackend
from mpx.conformance.cases import Case
from mpx.conformance.runner import run_case, run_cases

CASE = Case("add", "bf16", "forward", "normal")


class _Tweaked(CpuBackend):
    """The cpu backend with one behaviour changed per test."""

    def __init__(self, support=None, run=None):
        super().__init__()
        self._support, self._tweak = support, run

    def support(self, op, fmt, pass_="forward", shapes=None):
        return self._support or super().support(op, fmt, pass_, shapes)

    def _run(self, op, fmt, inputs, pass_, grad_outputs):
        outputs = super()._run(op, fmt, inputs, pass_, grad_outputs)
        return self._tweak(outputs) if self._tweak else outputs


def test_cpu_case_passes_with_its_error_and_time():
    result = run_case(CpuBackend(), CASE)
    assert result.status == "pass" and result.max_error_ulp == 0.0 and result.time_s > 0


def test_wrong_numbers_fail_with_the_error_in_ulps():
    def off_by_two_ulps(outputs):
        (out,) = outputs
        return ((out.double() * (1 + 2 * 2.0**-7)).to(out.dtype),)

    result = run_case(_Tweaked(run=off_by_two_ulps), CASE)
    assert result.status == "fail"
    assert result.max_error_ulp >= 1.5
    assert "out of bound" in result.detail


def test_an_exception_becomes_error_with_its_message():
    def explode(outputs):
        raise RuntimeError("kernel not found for bf16")

    result = run_case(_Tweaked(run=explode), CASE)
    assert result.status == "error" and "RuntimeError: kernel not found for bf16" in result.detail


def test_unsupported_reports_the_backend_reason():
    result = run_case(_Tweaked(support=Support("unsupported", "no bf16 adder")), CASE)
    assert result.status == "unsupported" and result.detail == "no bf16 adder"


def test_upcast_with_right_numbers_is_upcast_not_pass():
    result = run_case(_Tweaked(support=Support("upcast", "computed in fp32")), CASE)
    assert (result.status, result.detail, result.max_error_ulp) == ("upcast", "computed in fp32", 0.0)


def test_fallback_with_right_numbers_is_fallback():
    assert run_case(_Tweaked(support=Support("fallback", "ran on the CPU EP")), CASE).status == "fallback"


def test_upcast_with_wrong_numbers_is_fail():
    def zeros(outputs):
        return tuple(torch.zeros_like(o) + 1 for o in outputs)

    assert run_case(_Tweaked(support=Support("upcast", "fp32"), run=zeros), CASE).status == "fail"


def test_a_declared_decomposition_that_is_right_passes():
    result = run_case(_Tweaked(support=Support("decomposed", "as two half adds")), CASE)
    assert result.status == "pass" and "as two half adds" in result.detail


def test_wrong_output_dtype_is_a_contract_failure():
    result = run_case(_Tweaked(run=lambda outputs: tuple(o.float() for o in outputs)), CASE)
    assert result.status == "fail" and "contract says torch.bfloat16" in result.detail


def test_backward_cases_compare_gradients():
    result = run_case(CpuBackend(), Case("matmul", "fp16", "backward", "normal"))
    assert result.status == "pass"


def test_same_case_gives_the_same_result_every_run():
    cases = [CASE, Case("matmul", "bf16", "forward", "special")]
    first = [(r.status, r.max_error_ulp, r.detail) for r in run_cases(CpuBackend(), cases)]
    second = [(r.status, r.max_error_ulp, r.detail) for r in run_cases(CpuBackend(), cases)]
    assert first == second
