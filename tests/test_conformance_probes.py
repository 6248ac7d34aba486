"""The probes of issue 13: the accumulation bound, special values one at a time, overflow and optimizer sequences."""

from __future__ import annotations

import math

import pytest
import torch

import mpx
from mpx.backends.cpu.backend import CpuBackend
from mpx.conformance.cases import Case, generate
from mpx.conformance.runner import run_cases
from mpx.formats import BF16, FP16, FP32
from mpx.ops import get_op
from mpx.ops.error_model import failure_probability, sum_factor
from mpx.ops.reference import expected, prepare, result_formats
from mpx.ops.tolerance import bounds
from mpx.plugins import Backend


def test_the_probabilistic_factor_never_exceeds_the_worst_case_and_states_its_confidence():
    assert [sum_factor(n) for n in (0, 1, 2, 64)] == [0.0, 1.0, 2.0, 64.0]
    for n in (128, 1024, 4096, 16384):
        assert sum_factor(n) < n and sum_factor(n) == pytest.approx(8 * math.sqrt(n), rel=1e-3)
    assert failure_probability(64) == 0.0 and failure_probability(16384) < 5e-10


@pytest.mark.parametrize("fmt, share", [(FP16, 1 / 8), (BF16, 1 / 64)], ids=["fp16", "bf16"])
@pytest.mark.parametrize("op", ["matmul", "linear", "conv2d", "reduce_sum"])
def test_the_fp32_allowance_of_an_accumulation_probe_is_a_small_share_of_an_ulp(op, fmt, share):
    """|sum| = magnitude: the allowance beyond the output's 1 ULP is under 1/8 (fp16) or 1/64 (bf16) ULP."""
    spec = get_op(op)
    prepared = prepare(spec, fmt, "accumulation-16384", "forward", seed=1)
    (want,) = expected(spec, fmt, prepared, "forward")
    (bound,) = bounds(spec, result_formats(spec, fmt, "forward"), (want,), prepared, "forward", "keep")
    ulp = fmt.ulp(want)
    assert float(((bound - ulp) / ulp).max()) < share


def test_honest_fp32_accumulation_meets_the_bound_with_margin():
    cases = [c for c in generate([FP32, FP16, BF16], ["matmul", "reduce_sum"]) if "accumulation" in c.input_class]
    results = run_cases(CpuBackend(), cases)
    assert all(r.status.passes for r in results)
    # fp16 / bf16: one rounding of a near-exact fp32 sum (1 ULP where it straddles a midpoint)
    assert max(r.max_error_ulp for r in results if r.format != "fp32") <= 1.0
    for r in (r for r in results if r.format == "fp32"):  # at least 4x under the allowance of >= f(n) / 2 ULP
        assert r.max_error_ulp <= sum_factor(int(r.input_class.rpartition("-")[2])) / 8, r.id


@pytest.mark.parametrize("fmt", [FP32, FP16, BF16], ids=lambda f: f.name)
@pytest.mark.parametrize("op", ["matmul", "linear", "conv2d", "reduce_sum"])
def test_overflow_cases_overflow_uncapped_and_near_max_stays_finite_in_fp32(op, fmt):
    spec = get_op(op)
    prepared = prepare(spec, fmt, "overflow", "forward", seed=2)
    (want,) = expected(spec, fmt, prepared, "forward")
    assert torch.isinf(want).any() and (want == float("inf")).any() and (want == float("-inf")).any()
    with torch.no_grad():
        (fp32,) = spec.reference(*(t.float() for t in prepared.inputs))
    near = torch.isinf(want) & torch.isfinite(fp32)
    assert bool(near.any()) == (fmt != FP32)  # fp16 / bf16: overflow that an fp32 accumulator does not see


@pytest.mark.parametrize(
    "kind, check", [("pos-inf", torch.isposinf), ("neg-inf", torch.isneginf), ("nan", torch.isnan)]
)
@pytest.mark.parametrize("op", ["nonfinite_check", "scale", "unscale", "matmul", "softmax", "embedding", "cast"])
def test_each_special_value_class_plants_that_value_alone(op, kind, check):
    spec = get_op(op)
    prepared = prepare(spec, FP16, kind, "forward", seed=3)
    floats = [t for t in prepared.inputs if t.is_floating_point()]
    assert sum(int(check(t).sum()) for t in floats) == 1
    assert sum(int((~torch.isfinite(t)).sum()) for t in floats) == 1


def test_extremes_hold_max_subnormals_and_signed_zeros_but_nothing_non_finite():
    (x,) = prepare(get_op("relu"), BF16, "extremes", "forward", seed=4).inputs
    assert torch.isfinite(x).all() and (x == BF16.max).any() and (x == -BF16.max).any()
    assert (x == BF16.min_subnormal).any() and (torch.signbit(x) & (x == 0)).any()


class _PlainAdam(Backend):
    """A Backend without the training protocol: the sequence chains run() calls."""

    name = "plain-adam"

    def _run(self, op, fmt, inputs, pass_, grad_outputs):
        values = [t.double() if t.is_floating_point() else t for t in inputs]
        with torch.no_grad():
            results = op.reference(*values, **op.attrs)
        return tuple(f.round(r).to(f.torch_dtype) for r, f in zip(results, result_formats(op, fmt, pass_), strict=True))


class _ForgetsTheSkip(_PlainAdam):
    def _run(self, op, fmt, inputs, pass_, grad_outputs):
        master, grad, *rest, found_inf = inputs
        return super()._run(op, fmt, (master, grad.nan_to_num(0.0), *rest, torch.zeros_like(found_inf)), pass_, None)


def test_a_plain_backend_runs_the_sequence_through_run_and_a_missed_skip_fails():
    case = Case("adam_master_update", "bf16", "forward", "sequence")
    (good,) = run_cases(_PlainAdam(), [case])
    assert good.status.passes, good.detail
    (bad,) = run_cases(_ForgetsTheSkip(), [case])
    assert bad.status.value == "fail" and bad.detail.startswith("step 2 (skipped): master changed")


def test_the_cpu_backends_fp8_cast_back_of_inf_follows_its_declared_overflow():
    master = torch.tensor([float("inf"), -1e6, 1.0])
    for overflow, want in (("inf", [math.nan, math.nan, 1.0]), ("saturate", [448.0, -448.0, 1.0])):
        param = torch.empty(3, dtype=torch.float8_e4m3fn)
        CpuBackend(overflow=overflow).cast_back([(param, master)])
        assert param.float().tolist() == pytest.approx(want, nan_ok=True)
    assert mpx.format("e4m3").max == 448.0
