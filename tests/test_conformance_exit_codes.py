"""`mpx conformance` exits like a test runner: 0 all passed, 1 a problem case or a requested backend unavailable,
2 usage; `--exit-zero` for report-only runs; `--backend-option KEY=VALUE` reaches get_backend."""

import json
from pathlib import Path

import pytest

import mpx
from mpx.cli import main
from mpx.conformance.verdict import parse_backend_options

CUDA_AVAILABLE = {e.name: e.available for e in mpx.list_backends()}.get("cuda", False)


def _conformance(tmp_path: Path, *args: str) -> int:
    return main(["conformance", *args, "--json", str(tmp_path / "r.json"), "--quiet"])


def _statuses(tmp_path: Path) -> dict[str, str]:
    (backend,) = json.loads((tmp_path / "r.json").read_text())["backends"]
    return {case["id"]: case["status"] for case in backend["cases"]}


def test_every_case_passing_exits_0(tmp_path: Path) -> None:
    assert _conformance(tmp_path, "--backend", "cpu", "--op", "matmul", "--format", "fp32") == 0
    assert set(_statuses(tmp_path).values()) == {"pass"}


def test_a_downcast_case_exits_1(tmp_path: Path) -> None:
    argv = ("--backend", "cpu", "--backend-option", "gemm_inputs=bf16", "--op", "matmul", "--format", "fp32")
    assert _conformance(tmp_path, *argv) == 1
    assert "downcast" in _statuses(tmp_path).values()


def test_a_failing_case_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpx.conformance import runner
    from mpx.ops.tolerance import Comparison

    monkeypatch.setattr(runner, "compare", lambda *args, **kwargs: Comparison(False, 9.0, "injected"))
    monkeypatch.setattr(runner, "_downcast", lambda *args: "")
    assert _conformance(tmp_path, "--backend", "cpu", "--op", "add", "--format", "fp32") == 1
    assert set(_statuses(tmp_path).values()) == {"fail"}


def test_exit_zero_reports_failures_and_exits_0(tmp_path: Path) -> None:
    argv = ("--backend", "cpu", "--backend-option", "gemm_inputs=bf16", "--op", "matmul", "--format", "fp32")
    assert _conformance(tmp_path, *argv, "--exit-zero") == 0
    assert "downcast" in _statuses(tmp_path).values()


@pytest.mark.skipif(CUDA_AVAILABLE, reason="needs a machine where the cuda backend is unavailable")
def test_a_requested_backend_that_is_unavailable_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--backend", "cuda", "--op", "add", "--json", str(tmp_path / "r.json")]) == 1
    assert "cuda: unavailable" in capsys.readouterr().err


@pytest.mark.skipif(CUDA_AVAILABLE, reason="needs a machine where the cuda backend is unavailable")
def test_an_unavailable_backend_that_was_not_requested_does_not_fail_the_run(tmp_path: Path) -> None:
    """No --backend runs every backend mpx knows; one that cannot run here is reported, not a failure."""
    assert _conformance(tmp_path, "--op", "add", "--format", "fp32") == 0
    backends = json.loads((tmp_path / "r.json").read_text())["backends"]
    assert {b["name"]: b["available"] for b in backends}["cuda"] is False


@pytest.mark.parametrize("option", ["gemm_inputs", "=bf16", "not a name=1"])
def test_a_malformed_backend_option_is_a_usage_error(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--backend", "cpu", "--backend-option", option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend-option" in err and "KEY=VALUE" in err


def test_an_option_the_backend_refuses_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The backend's own validation speaks: a requested backend that cannot be built is unavailable, exit 1."""
    assert _conformance(tmp_path, "--backend", "cpu", "--backend-option", "overflow=wrap", "--op", "add") == 1
    (backend,) = json.loads((tmp_path / "r.json").read_text())["backends"]
    assert backend["available"] is False and "overflow must be" in backend["reason"]


def test_backend_option_values_are_json_where_they_parse_else_strings() -> None:
    options = parse_backend_options(['provider_options={"x": "1"}', "native=true", "gemm_inputs=bf16", "n=3"])
    assert options == {"provider_options": {"x": "1"}, "native": True, "gemm_inputs": "bf16", "n": 3}
