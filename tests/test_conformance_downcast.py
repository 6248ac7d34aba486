"""`downcast`: a result that fails its format but is right for a narrower one names the format it was computed in."""

import pytest
import torch

import mpx
from mpx.conformance import generate, run_case
from mpx.conformance.downcast import TF32, explain
from mpx.conformance.status import Status
from mpx.ops import get_op
from mpx.ops.reference import expected, prepare

FP32_GEMM_CASES = generate([mpx.format("fp32")], ["matmul", "linear"])


@pytest.mark.parametrize("case", FP32_GEMM_CASES, ids=lambda c: c.id)
def test_fp32_gemm_with_bf16_inputs_is_downcast_naming_bf16(case: object) -> None:
    result = run_case(mpx.get_backend("cpu", gemm_inputs="bf16"), case)
    assert result.status in (Status.DOWNCAST, Status.PASS)  # inputs that bf16 holds exactly give fp32's answer
    if result.status is Status.DOWNCAST:
        assert result.detail.startswith("computed as bf16")


def test_most_fp32_gemm_cases_with_bf16_inputs_are_downcast() -> None:
    backend = mpx.get_backend("cpu", gemm_inputs="bf16")
    # overflow cases overflow to inf in any precision: no downcast can show there
    statuses = [run_case(backend, case).status for case in FP32_GEMM_CASES if case.input_class != "overflow"]
    assert statuses.count(Status.DOWNCAST) >= len(statuses) - 2


@pytest.mark.parametrize("case", FP32_GEMM_CASES, ids=lambda c: c.id)
def test_fp32_gemm_passes_once_configured_not_to_downcast(case: object) -> None:
    assert run_case(mpx.get_backend("cpu", gemm_inputs=None), case).status is Status.PASS


def test_a_wrong_result_stays_fail() -> None:
    op, fmt = get_op("matmul"), mpx.format("fp32")
    prepared = prepare(op, fmt, "normal", "forward", seed=1)
    (want,) = expected(op, fmt, prepared, "forward")
    assert explain(op, fmt, (want * 1.01,), prepared, "forward") == ""
    assert explain(op, fmt, (-want,), prepared, "forward") == ""


def test_an_fp16_case_computed_with_bf16_inputs_is_downcast() -> None:
    (case,) = generate([mpx.format("fp16")], ["matmul"], ["matmul/fp16/forward/normal"])
    result = run_case(mpx.get_backend("cpu", gemm_inputs="bf16"), case)
    assert result.status is Status.DOWNCAST and "bf16" in result.detail


def test_tf32_rounds_fp32_to_10_mantissa_bits_ties_to_even() -> None:
    x = torch.tensor([1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-20, 3.0e38], dtype=torch.float64)
    assert TF32.round(x).tolist()[:3] == [1.0, 1 + 2**-9, 1 + 2**-10]
    assert TF32.mantissa_bits == 10 and TF32.exponent_bits == 8


def test_downcast_is_never_ready_and_fails_junit() -> None:
    assert not Status.DOWNCAST.passes and not Status.DOWNCAST.runs and Status.DOWNCAST.junit == "failure"


def test_the_cpu_backend_refuses_an_unknown_gemm_input_format() -> None:
    with pytest.raises(mpx.MpxError, match="gemm_inputs must be a format name"):
        mpx.get_backend("cpu", gemm_inputs="bf17")
