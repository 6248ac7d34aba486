"""Formats are declared once: the suite runs exactly a backend's declared formats; a BackendSpec and a Backend
that disagree are an error naming both."""

from __future__ import annotations

import pytest

import mpx
from mpx.backends.cpu.backend import CpuBackend
from mpx.conformance.cases import generate
from mpx.conformance.scenarios import select_formats, select_scenarios
from mpx.conformance.suite import Selection, run_suite
from mpx.conformance.verdict import exit_code
from mpx.formats import BF16, FP16, FP32
from mpx.plugins.manager import registry


class _SaysFp16Too(CpuBackend):
    name = "liar-formats"
    formats = (FP32, FP16, BF16)


class _LeavesTheDefault(CpuBackend):
    name = "spec-formats"


@pytest.fixture
def add_spec(monkeypatch):
    def add(name, factory, formats):
        monkeypatch.setitem(registry().specs, name, mpx.BackendSpec(name=name, factory=factory, formats=formats))
        monkeypatch.setitem(registry().sources, name, "tests (a liar)")

    return add


def _run(name):
    cases = generate(ops=["add", "matmul", "semantics"])
    selection = Selection([name], select_scenarios([]), select_formats([]), cases, isolate=False)
    return run_suite(selection)


def test_a_spec_and_a_backend_that_disagree_are_an_error_naming_both(add_spec):
    add_spec("liar-formats", _SaysFp16Too, ("fp32", "bf16"))
    with pytest.raises(mpx.PluginError) as caught:
        mpx.get_backend("liar-formats")
    message = str(caught.value)
    assert (
        "BackendSpec declares formats (fp32, bf16)" in message and "_SaysFp16Too declares (fp32, fp16, bf16)" in message
    )
    report = _run("liar-formats")
    (backend,) = report.backends
    assert not backend.available and "BackendSpec declares formats (fp32, bf16)" in backend.reason
    assert not backend.cases and not any(s.ready for s in backend.scenarios)
    assert exit_code(report, ["liar-formats"]) == 1


def test_the_suite_runs_exactly_the_formats_the_spec_declares(add_spec):
    add_spec("spec-formats", _LeavesTheDefault, ("fp32", "bf16"))
    assert [f.name for f in mpx.get_backend("spec-formats").formats] == ["fp32", "bf16"]
    (backend,) = _run("spec-formats").backends
    assert backend.cases and {c.format for c in backend.cases} == {"fp32", "bf16"}
    assert all(c.status.passes for c in backend.cases)
    assert {s.format for s in backend.scenarios} == {"fp32", "bf16"}


def test_a_backend_that_declares_the_same_formats_as_its_spec_is_accepted(add_spec):
    add_spec("agreeing", _SaysFp16Too, ("bf16", "fp16", "fp32"))
    assert {f.name for f in mpx.get_backend("agreeing").formats} == {"fp32", "fp16", "bf16"}
