"""prepare / expected / compare: the reference, its single rounding and the tolerance rules."""

from __future__ import annotations

import pytest
import torch

from mpx.errors import OpError
from mpx.formats import BF16, FP8_E4M3, FP16, FP32
from mpx.ops import get_op
from mpx.ops.error_model import sum_factor
from mpx.ops.reference import Prepared, expected, prepare
from mpx.ops.tolerance import Comparison, compare


def one_ulp_up(t: torch.Tensor, fmt) -> torch.Tensor:
    return t + fmt.ulp(t)


def case(name: str, fmt, input_class: str = "normal", pass_: str = "forward", seed: int = 0):
    op = get_op(name)
    prepared = prepare(op, fmt, input_class, pass_, seed)
    return op, prepared, expected(op, fmt, prepared, pass_)


def test_prepare_is_deterministic_for_a_seed_and_differs_between_seeds() -> None:
    op = get_op("matmul")
    first, again, other = (prepare(op, BF16, "normal", "forward", s) for s in (3, 3, 4))
    assert all(torch.equal(a, b) for a, b in zip(first.inputs, again.inputs, strict=True))
    assert not torch.equal(first.inputs[0], other.inputs[0])


def test_prepared_inputs_are_float64_values_representable_in_their_storage_format() -> None:
    op = get_op("sgd_master_update")
    prepared = prepare(op, FP16, "normal", "forward", 0)
    assert [t.dtype for t in prepared.inputs] == [torch.float64] * 4
    assert [t.dtype for t in prepared.storage_inputs] == [torch.float32, torch.float16, torch.float32, torch.float32]
    for value, stored in zip(prepared.inputs, prepared.storage_inputs, strict=True):
        assert torch.equal(stored.double(), value)
    assert prepared.grad_outputs is None and prepared.storage_grad_outputs is None


def test_backward_prepare_gives_one_gradient_per_output_in_the_output_format() -> None:
    op = get_op("matmul")
    prepared = prepare(op, FP8_E4M3, "normal", "backward", 0)
    (grad,) = prepared.storage_grad_outputs
    assert grad.dtype == torch.bfloat16  # fp8 GEMMs write bf16
    assert grad.shape == (prepared.inputs[0] @ prepared.inputs[1]).shape


@pytest.mark.parametrize(
    ("name", "fmt", "input_class", "pass_"),
    [
        ("scale", FP16, "normal", "backward"),
        ("softmax", FP8_E4M3, "normal", "forward"),
        ("add", FP16, "unknown", "forward"),
        ("add", FP16, "normal", "sideways"),
    ],
)
def test_prepare_rejects_a_case_the_op_does_not_define(name, fmt, input_class, pass_) -> None:
    with pytest.raises(OpError):
        prepare(get_op(name), fmt, input_class, pass_, 0)


def test_expected_rounds_the_float64_result_once_ties_to_even() -> None:
    op = get_op("add")
    a = torch.tensor([1.0, 1.0 + 2**-7], dtype=torch.float64)
    b = torch.tensor([2**-8, 2**-8], dtype=torch.float64)  # both sums lie halfway between two bf16 values
    prepared = Prepared((a, b), op.to_storage(BF16, (a, b)))
    (want,) = expected(op, BF16, prepared, "forward")
    assert want.tolist() == [1.0, 1.0 + 2**-6]


def test_expected_saturates_and_flushes_when_asked() -> None:
    op = get_op("add")
    a = torch.tensor([65504.0, 2.0**-20], dtype=torch.float64)
    b = torch.tensor([65504.0, 0.0], dtype=torch.float64)
    prepared = Prepared((a, b), op.to_storage(FP16, (a, b)))
    assert expected(op, FP16, prepared, "forward")[0].tolist() == [float("inf"), 2.0**-20]
    assert expected(op, FP16, prepared, "forward", overflow="saturate", subnormals="flush")[0].tolist() == [
        65504.0,
        0.0,
    ]


def test_expected_backward_is_autograd_through_the_reference() -> None:
    op, prepared, (grad_a, grad_b) = case("mul", FP32, pass_="backward")
    a, b = prepared.inputs
    (g,) = prepared.grad_outputs
    assert torch.equal(grad_a, FP32.round(g * b)) and torch.equal(grad_b, FP32.round(g * a))


def test_compare_passes_the_reference_itself_with_zero_error() -> None:
    op, prepared, want = case("softmax", FP16)
    result = compare(op, FP16, want, want, prepared, "forward")
    assert result == Comparison(True, 0.0, result.detail) and result.passed


def test_exact_op_fails_on_one_ulp() -> None:
    op, prepared, (want,) = case("add", BF16)
    got = want.clone()
    got[0, 0] = one_ulp_up(want[0, 0], BF16)
    result = compare(op, BF16, (got.to(torch.bfloat16),), (want,), prepared, "forward")
    assert not result.passed and result.max_error_ulp == 1.0
    assert "result 0[0, 0]" in result.detail


def test_one_ulp_op_passes_one_ulp_and_fails_two() -> None:
    op, prepared, (want,) = case("gelu", FP16)
    one, two = want.clone(), want.clone()
    one[1, 1] = one_ulp_up(want[1, 1], FP16)
    two[1, 1] = one_ulp_up(one[1, 1], FP16)
    assert compare(op, FP16, (one,), (want,), prepared, "forward").passed
    assert not compare(op, FP16, (two,), (want,), prepared, "forward").passed


def test_nan_must_meet_nan_and_inf_the_same_inf() -> None:
    op = get_op("relu")
    x = torch.tensor([float("nan"), float("inf"), 1.0], dtype=torch.float64)
    prepared = Prepared((x,), op.to_storage(FP32, (x,)))
    (want,) = expected(op, FP32, prepared, "forward")
    assert compare(op, FP32, (want.clone(),), (want,), prepared, "forward").passed
    for wrong in (
        [0.0, float("inf"), 1.0],
        [float("nan"), float("-inf"), 1.0],
        [float("nan"), float("inf"), float("inf")],
    ):
        result = compare(op, FP32, (torch.tensor(wrong),), (want,), prepared, "forward")
        assert not result.passed and result.max_error_ulp == float("inf")


def test_accumulation_bound_grows_with_the_sum_of_absolute_terms() -> None:
    op, prepared, (want,) = case("matmul", FP32, "long-reduction")
    a, b = prepared.inputs
    n = a.shape[1]  # sum_factor: the probabilistic ~8 sqrt(n) in place of the worst case n
    bound = FP32.ulp(want) + sum_factor(n) * 2.0**-24 * (a.abs() @ b.abs()) + n * 2.0**-150
    inside, outside = want + 0.99 * bound, want + 1.01 * bound
    assert compare(op, FP32, (inside,), (want,), prepared, "forward").passed
    assert not compare(op, FP32, (outside,), (want,), prepared, "forward").passed


def test_a_gather_with_no_accumulation_must_be_exact() -> None:
    op, prepared, (want,) = case("embedding", FP16)
    got = want.clone()
    got[0, 0] = one_ulp_up(want[0, 0], FP16)
    assert not compare(op, FP16, (got,), (want,), prepared, "forward").passed


def test_a_skipped_optimizer_step_must_return_its_inputs_bit_for_bit() -> None:
    op, prepared, want = case("adam_master_update", BF16, "special")
    assert torch.equal(want[0], prepared.inputs[0])  # found_inf = 1: masters untouched
    got = [w.clone() for w in want]
    got[0][0, 0] = one_ulp_up(want[0][0, 0], FP32)
    assert not compare(op, BF16, tuple(got), want, prepared, "forward").passed


def test_compare_reports_a_shape_or_count_mismatch() -> None:
    op, prepared, (want,) = case("add", FP32)
    assert not compare(op, FP32, (want[:1],), (want,), prepared, "forward").passed
    assert not compare(op, FP32, (), (want,), prepared, "forward").passed


def test_gelu_tail_allows_the_fp32_algorithms_error_and_no_more() -> None:
    """At x = -3.47, 1 + erf(x / sqrt 2) cancels: an erf 1 ULP off is allowed, one 10 ULP off is not."""
    op = get_op("gelu")
    x = torch.tensor([[-3.46875]], dtype=torch.float64)
    prepared = Prepared((x,), (x.float(),))
    (want,) = expected(op, FP32, prepared, "forward")
    erf = torch.erf(x / 2**0.5)
    for erf_ulps, passes in ((1, True), (10, False)):
        got = (0.5 * x * (1 + erf + erf_ulps * 2.0**-24)).float()
        assert compare(op, FP32, (got,), (want,), prepared, "forward").passed is passes
