"""Overflow and subnormal handling are measured, not taken on trust."""

import pytest

from mpx.backends.cpu.backend import CpuBackend
from mpx.conformance.cases import Case
from mpx.conformance.runner import run_case

FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("overflow", ["inf", "saturate"])
def test_overflow_measured_as_the_cpu_backend_is_told(fmt, overflow):
    result = run_case(CpuBackend(overflow=overflow), Case("semantics", fmt, "forward", "overflow"))
    assert (result.status, result.measured) == ("pass", overflow)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("subnormals", ["keep", "flush"])
def test_subnormals_measured_as_the_cpu_backend_is_told(fmt, subnormals):
    result = run_case(CpuBackend(subnormals=subnormals), Case("semantics", fmt, "forward", "subnormals"))
    assert (result.status, result.measured) == ("pass", subnormals)


def test_a_backend_that_declares_inf_but_saturates_fails():
    backend = CpuBackend(overflow="saturate")
    backend.overflow = "inf"  # the declaration lies; the measurement must catch it
    backend_run = CpuBackend(overflow="saturate").run
    backend.run = backend_run
    result = run_case(backend, Case("semantics", "fp16", "forward", "overflow"))
    assert result.status == "fail" and result.measured == "saturate"
    assert "declares overflow=inf" in result.detail


def test_a_backend_without_add_in_a_format_is_measured_through_cast():
    from mpx import Support

    class NoBf16Add(CpuBackend):
        def support(self, op, fmt, pass_="forward", shapes=None):
            if op.name == "add" and fmt.name == "bf16":
                return Support("unsupported", "no bf16 adder")
            return super().support(op, fmt, pass_)

    result = run_case(NoBf16Add(overflow="saturate"), Case("semantics", "bf16", "forward", "overflow"))
    assert (result.status, result.measured) == ("pass", "saturate")
    assert "measured with cast in bf16" in result.detail
