"""Exhaustive accuracy tables: the sweep, the ULP metrics, rows on honest and lying backends, tolerance profiles."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

import mpx
from mpx.backends.cpu.backend import CpuBackend
from mpx.conformance.accuracy_tables_measure import elementwise_ops, measure, measure_backend, plan
from mpx.conformance.accuracy_tables_sweep import all_codes, distances, sweep_inputs
from mpx.conformance.tolerance_profiles import PROFILES, get_profile, within
from mpx.errors import ConformanceError
from mpx.plugins import Support

FP16, BF16, FP32 = mpx.format("fp16"), mpx.format("bf16"), mpx.format("fp32")
OPENCL = get_profile("opencl")


@pytest.mark.parametrize(("fmt", "reference"), [(FP16, np.float16), (BF16, ml_dtypes.bfloat16)])
def test_the_sweep_is_every_value_of_the_format_once(fmt: mpx.Format, reference: type) -> None:
    codes = all_codes(fmt)
    bits = codes.view(torch.int16).numpy().view(np.uint16)
    assert codes.numel() == 65536 and len(np.unique(bits)) == 65536
    with np.errstate(invalid="ignore"):  # ml_dtypes / numpy decode the codes independently
        independent = np.arange(65536, dtype=np.uint16).view(reference).astype(np.float64)
    ours = codes.to(torch.float64).numpy()
    order = np.argsort(bits)
    assert np.array_equal(ours[order], independent, equal_nan=True)


def test_fp32_is_a_sample_with_the_specials() -> None:
    values = all_codes(FP32).to(torch.float64)
    assert values.numel() == 65536 + 8
    for special in (math.inf, -math.inf, FP32.max, FP32.min_subnormal):
        assert bool((values == special).any())
    assert values.isnan().sum() > 0 and (values.abs() < FP32.min_normal).sum() > 2  # NaN codes and subnormals


def test_binary_ops_see_every_value_in_each_argument() -> None:
    a, b = sweep_inputs(mpx.get_op("add"), FP16)
    for arg in (a, b):  # stored codes: NaN payloads too
        assert arg.dtype == torch.float16 and len(np.unique(arg.view(torch.int16).numpy())) == 65536
    assert not torch.equal(a.view(torch.int16), b.view(torch.int16))


def _distances(got: list[float], want: list[float], fmt: mpx.Format = FP16) -> list[float]:
    g, w = torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64)
    return distances(g, w, w, fmt)[0].tolist()


def test_distances_count_representable_values_and_treat_specials_explicitly() -> None:
    tiny = FP16.min_subnormal
    assert _distances([1.0 + FP16.eps, 1.0], [1.0, 1.0]) == [1.0, 0.0]
    assert _distances([tiny, -0.0], [-tiny, 0.0]) == [2.0, 0.0]  # across zero; +0 and -0 are one value
    assert _distances([math.nan, math.nan, 1.0], [math.nan, 1.0, math.nan]) == [0.0, math.inf, math.inf]
    assert _distances([math.inf, math.inf, -math.inf], [math.inf, FP16.max, math.inf]) == [0.0, math.inf, math.inf]
    assert _distances([2.0 - FP16.eps, 2.0], [2.0, 2.0 - FP16.eps]) == [1.0, 1.0]  # across a binade
    assert _distances([1.0 + BF16.eps * 3], [1.0], BF16) == [3.0]


def test_the_exact_metric_is_against_the_float64_value() -> None:
    got, want = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0])
    exact = torch.tensor([1.0 + FP16.eps / 2, 1.0 + FP16.eps / 4], dtype=torch.float64)
    _, fractional = distances(got, want, exact, FP16)
    assert fractional.tolist() == [0.5, 0.25]


def test_cpu_is_correctly_rounded_everywhere() -> None:
    """The cpu backend computes element-wise ops in float64 and rounds once: every row must be correctly rounded."""
    tables = measure_backend(CpuBackend(), ["exp", "mul"], ["fp16", "bf16"])
    assert len(tables.rows) == 8
    for row in tables.rows:
        assert row.status == "measured" and row.inputs == 65536
        assert row.correctly_rounded and row.max_ulp == 0 and row.max_ulp_exact <= 0.5, row


class OneValueLiar(CpuBackend):
    """exp off by `steps` ULPs at x = 0.5 and NaN at x = +inf; every other result correct."""

    name = "liar"

    def __init__(self, steps: int = 1) -> None:
        super().__init__()
        self.steps = steps

    def _run(self, op, fmt, inputs, pass_, grad_outputs):  # noqa: ANN001, ANN202
        results = super()._run(op, fmt, inputs, pass_, grad_outputs)
        if op.name != "exp":
            return results
        (out,) = results
        x = inputs[0]
        bits = out.view(torch.int16).clone()
        bits[x == 0.5] += self.steps
        out = bits.view(out.dtype)
        return (torch.where(x == math.inf, torch.full_like(out, math.nan), out),)


def test_a_lying_backend_is_caught_with_its_worst_input() -> None:
    row = measure(OneValueLiar(), mpx.get_op("exp"), FP16, "forward", OPENCL)
    assert row.status == "measured" and not row.correctly_rounded
    assert row.not_correctly_rounded == 2  # 0.5 and +inf
    assert row.max_ulp == math.inf  # NaN where the reference is +inf
    assert row.worst_input == ("inf",) and row.worst_got == "nan" and row.worst_want == "inf"
    assert row.within is False
    assert row.to_dict()["max_ulp"] == "inf"


@pytest.mark.parametrize(("steps", "strict", "opencl", "cuda"), [(2, False, True, True), (4, False, False, False)])
def test_profiles_judge_the_same_error_by_their_own_limits(steps: int, strict: bool, opencl: bool, cuda: bool) -> None:
    class Liar(OneValueLiar):
        def _run(self, op, fmt, inputs, pass_, grad_outputs):  # noqa: ANN001, ANN202
            (out,) = super()._run(op, fmt, inputs, pass_, grad_outputs)
            return (torch.where(inputs[0] == math.inf, torch.full_like(out, math.inf), out),)  # only 0.5 lies

    rows = {name: measure(Liar(steps), mpx.get_op("exp"), FP16, "forward", PROFILES[name]) for name in PROFILES}
    assert {row.max_ulp for row in rows.values()} == {float(steps)}
    assert rows["strict"].worst_input == ("0.5",)
    assert (rows["strict"].within, rows["opencl"].within, rows["cuda"].within) == (strict, opencl, cuda)


def test_published_limits() -> None:
    """The numbers in FACTS.md: OpenCL 1.2 / CUDA single precision max ULP."""
    opencl, cuda = PROFILES["opencl"], PROFILES["cuda"]
    assert [opencl.limit("exp", "forward"), opencl.limit("sqrt", "forward"), opencl.limit("sqrt", "backward")] == [
        3.0,
        3.0,
        2.0,
    ]
    assert [cuda.limit("exp", "forward"), cuda.limit("sqrt", "forward"), cuda.limit("sqrt", "backward")] == [2, 0, 2]
    assert opencl.limit("add", "forward") == 0.0 and cuda.limit("mul", "forward") == 0.0
    assert opencl.limit("gelu", "forward") is None and cuda.limit("silu", "backward") is None  # never invented
    assert PROFILES["strict"].limit("gelu", "forward") == 0.0
    # OpenCL's metric is against the exact value, CUDA's against the correctly rounded result
    assert within(opencl, "exp", "forward", 4.0, 2.9) is True and within(cuda, "exp", "forward", 3.0, 2.4) is False
    assert within(opencl, "add", "forward", 1.0, 0.5) is False  # correctly rounded means 0 from the rounded result
    with pytest.raises(ConformanceError, match="unknown tolerance profile 'ieee'.*strict, opencl, cuda"):
        get_profile("ieee")


class NoBf16(CpuBackend):
    name = "nobf16"

    def support(self, op, fmt, pass_="forward", shapes=None):  # noqa: ANN001, ANN201
        if fmt.name == "bf16":
            return Support("unsupported", "no bf16 units")
        return super().support(op, fmt, pass_, shapes)

    def _run(self, op, fmt, inputs, pass_, grad_outputs):  # noqa: ANN001, ANN202
        if op.name == "sqrt" and pass_ == "backward":
            raise RuntimeError("kernel exploded")
        return super()._run(op, fmt, inputs, pass_, grad_outputs)


def test_rows_a_backend_cannot_run_say_so_and_are_never_dropped() -> None:
    tables = measure_backend(NoBf16(), ["sqrt"], ["fp16", "bf16"])
    assert [(r.format, r.pass_, r.status) for r in tables.rows] == [
        ("fp16", "forward", "measured"),
        ("fp16", "backward", "error"),
        ("bf16", "forward", "unsupported"),
        ("bf16", "backward", "unsupported"),
    ]
    assert "kernel exploded" in tables.rows[1].detail and tables.rows[2].detail == "no bf16 units"


def test_chunked_calls_give_the_same_rows() -> None:
    whole = measure(CpuBackend(), mpx.get_op("silu"), BF16, "backward", OPENCL)
    chunked = measure(CpuBackend(), mpx.get_op("silu"), BF16, "backward", OPENCL, chunk=10000)
    assert (whole.max_ulp, whole.not_correctly_rounded, whole.worst_input) == (
        chunked.max_ulp,
        chunked.not_correctly_rounded,
        chunked.worst_input,
    )


def test_every_elementwise_op_and_its_backward_is_planned() -> None:
    names = {op.name for op in elementwise_ops()}
    assert {"add", "mul", "relu", "gelu", "silu", "exp", "sqrt", "where"} <= names
    planned = {(op.name, fmt.name, p) for op, fmt, p in plan()}
    assert ("where", "bf16", "backward") in planned and ("gelu", "fp16", "forward") in planned
    assert len(planned) == len(names) * 3 * 2
