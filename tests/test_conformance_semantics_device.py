"""Probes only count on the device: a fallback measurement is `fallback`, and a semantics mismatch blocks the
format's every scenario column."""

from dataclasses import replace
from types import SimpleNamespace

import mpx
from mpx.conformance import generate, run_case
from mpx.conformance.rollup import roll_up
from mpx.conformance.scenarios import select_scenarios
from mpx.conformance.status import Status

FP16_SEMANTICS = generate([mpx.format("fp16")], ["semantics"])


def test_a_probe_that_ran_through_fallback_is_fallback_with_the_reason_never_pass() -> None:
    backend = mpx.get_backend("cpu")
    backend.semantics = {"fp16": SimpleNamespace(fallback="the probe's Add ran on CPUExecutionProvider")}
    for case in FP16_SEMANTICS:
        result = run_case(backend, case)
        assert result.status is Status.FALLBACK and result.measured == "unknown"
        assert "ran on CPUExecutionProvider" in result.detail


def test_a_probe_whose_op_support_says_fallback_is_fallback() -> None:
    backend = mpx.get_backend("cpu")
    real_support = backend.support

    def support(*args: object, **kwargs: object) -> object:
        return SimpleNamespace(status="fallback", reason="Add placed on the CPU EP", runs=True)

    backend.support = support  # type: ignore[method-assign]
    statuses = {run_case(backend, case).status for case in FP16_SEMANTICS}
    backend.support = real_support  # type: ignore[method-assign]
    assert statuses == {Status.FALLBACK}


def test_on_the_device_the_probes_still_pass() -> None:
    backend = mpx.get_backend("cpu")
    assert {run_case(backend, case).status for case in FP16_SEMANTICS} == {Status.PASS}


def test_a_semantics_mismatch_makes_every_column_of_that_format_not_ready() -> None:
    scenarios = select_scenarios([])
    results = [run_case(mpx.get_backend("cpu"), case) for case in generate([mpx.format("fp16")])]
    detail = "declares overflow=saturate but add in fp16 measures inf"
    mismatched = [
        replace(r, status=Status.FAIL, detail=detail) if r.id == "semantics/fp16/overflow" else r for r in results
    ]
    columns = roll_up(scenarios, mismatched, ["fp16"])
    assert columns and not any(c.ready for c in columns)
    for column in columns:
        assert any(m.op == "semantics" and detail in m.reason for m in column.missing)
