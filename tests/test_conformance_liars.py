"""Deliberately wrong backends (tests/liars.py) are caught: non-pass cases on the ops they get wrong and a
scenario column that is not ready; the honest cpu backend passes every case and is ready everywhere.

Each liar is the cpu backend wrong in one way, so it runs only the cases of what it changes; its results
replace the honest full run's for those ids before the roll-up (the rest of the run is the honest one).
"""

from __future__ import annotations

import functools

import pytest
from conformance_helpers import full_cpu_run
from liars import (
    AdamStepOnSkip,
    BlindCheck,
    ExpOffByUlps,
    FiniteOnlySaturation,
    FlushesButDeclaresKeep,
    RunningSumGemm,
)

import mpx
from mpx.conformance.cases import generate, semantic_cases
from mpx.conformance.report import CaseResult, Report
from mpx.conformance.rollup import roll_up
from mpx.conformance.runner import run_cases
from mpx.conformance.scenarios import select_scenarios
from mpx.formats import BF16, FP16


@functools.lru_cache(maxsize=1)
def honest() -> dict[str, CaseResult]:
    report = Report.load(full_cpu_run()["json"])
    (backend,) = report.backends
    return {case.id: case for case in backend.cases}


def _caught(liar, ops, formats, columns, classes=()):
    """Run the liar on the cases of `ops` in `formats`; assert non-pass cases and these columns not ready."""
    cases = [
        c
        for c in generate([mpx.format(f) for f in formats], ops)
        if c.op in ops and (not classes or c.input_class in classes)
    ]
    cases += semantic_cases([mpx.format(f) for f in formats])
    results = run_cases(liar, cases)
    bad = [r for r in results if not r.status.passes]
    assert bad, f"{type(liar).__name__} passed every case of {ops}"
    merged = {**honest(), **{r.id: r for r in results}}
    scenarios = {(s.scenario, s.format): s for s in roll_up(select_scenarios([]), merged.values())}
    for column in columns:
        assert not scenarios[column].ready, f"{type(liar).__name__}: {column} is ready"
    return bad, scenarios


def test_the_honest_cpu_backend_passes_every_case_and_every_column_is_ready():
    cases = honest()
    assert cases and all(c.status.passes for c in cases.values()), [c.id for c in cases.values() if not c.status.passes]
    classes = {c.input_class for c in cases.values()}
    assert {"pos-inf", "neg-inf", "nan", "extremes", "overflow", "sequence", "accumulation-16384"} <= classes
    scenarios = roll_up(select_scenarios([]), cases.values())
    assert scenarios and all(s.ready for s in scenarios)


@pytest.mark.parametrize("accumulator", [FP16, BF16], ids=["fp16", "bf16"])
def test_a_low_precision_running_sum_in_gemms_is_caught(accumulator):
    liar = RunningSumGemm(accumulator)
    bad, _ = _caught(liar, ["matmul", "linear"], [accumulator.name], [("training-generative", accumulator.name)])
    caught = {r.input_class for r in bad if r.op == "matmul"}
    assert {"accumulation-1024", "accumulation-16384"} <= caught, caught
    assert all(r.status.value == "fail" for r in bad)


@pytest.mark.parametrize("blind_to", ["neg-inf", "nan"])
def test_an_overflow_check_blind_to_one_special_value_is_caught(blind_to):
    liar = BlindCheck(blind_to)
    columns = [("training-classification", f) for f in ("fp16", "bf16")]
    bad, scenarios = _caught(liar, ["nonfinite_check"], ["fp16", "bf16", "fp32"], columns)
    assert {r.id for r in bad} >= {f"nonfinite_check/{f}/forward/{blind_to}" for f in ("fp16", "bf16", "fp32")}
    missing = {m.op for m in scenarios[("training-generative", "bf16")].missing}
    assert missing == {"nonfinite_check"}


def test_gemms_that_saturate_only_finite_overflow_are_caught():
    bad, _ = _caught(
        FiniteOnlySaturation(), ["matmul", "linear", "conv2d"], ["bf16"], [("inference-generative", "bf16")]
    )
    assert {r.id for r in bad} == {f"{op}/bf16/forward/overflow" for op in ("matmul", "linear", "conv2d")}


def test_adam_that_advances_its_step_on_a_skipped_step_is_caught():
    bad, scenarios = _caught(
        AdamStepOnSkip(), ["adam_master_update"], ["fp16", "bf16"], [("training-generative", "bf16")]
    )
    assert {r.input_class for r in bad} == {"sequence"}
    assert all("step count is 11, expected 10" in r.detail for r in bad)


def test_a_semantics_mismatch_leaves_every_column_of_the_format_not_ready():
    liar = FlushesButDeclaresKeep()
    columns = [(s, "bf16") for s in ("training-generative", "inference-classification")]
    bad, scenarios = _caught(liar, ["add", "mul"], ["bf16", "fp32"], columns)
    assert "semantics/bf16/subnormals" in {r.id for r in bad}
    reasons = [m for m in scenarios[("inference-classification", "bf16")].missing if m.op == "semantics"]
    # the bf16 columns also use fp32 (losses, softmax under autocast): both measurements belong to them
    assert [(m.format, m.pass_) for m in reasons] == [("bf16", "subnormals"), ("fp32", "subnormals")]
    assert all("measures flush" in m.reason for m in reasons)


def test_an_always_caught_kind_still_is_wrong_exp():
    # exp is fp32 under autocast: sampling in every column of inference-generative needs it right in fp32
    columns = [("inference-generative", f) for f in ("fp32", "fp16", "bf16")]
    bad, _ = _caught(ExpOffByUlps(), ["exp"], ["fp32"], columns)
    assert {r.op for r in bad} == {"exp"}


def test_a_backend_that_rounds_gemm_inputs_to_bf16_is_downcast():
    bad, _ = _caught(
        mpx.get_backend("cpu", gemm_inputs="bf16"), ["matmul"], ["fp32"], [("training-generative", "fp32")]
    )
    assert any(r.status.value == "downcast" for r in bad)
