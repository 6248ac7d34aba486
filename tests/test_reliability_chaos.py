"""Fault injection (issue 16): the chaos plugin (tests/fake_plugins/chaos) raises, exits, interrupts, aborts,
segfaults, hangs, leaks and returns NaN, garbage and wrong shapes; the run survives, the other backend and
the other cases are unaffected and every report is written."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from chaos_helpers import start_until_marked

import mpx
from mpx.cli import main

EXPECTED = {  # case -> (status, words of its detail)
    "add/fp16/forward/normal": ("error", "RuntimeError: chaos: the driver returned an error"),
    "mul/fp16/forward/normal": ("error", "the backend raised SystemExit: 0"),
    "relu/fp16/forward/normal": ("error", "the backend raised KeyboardInterrupt"),
    "gelu/fp16/forward/normal": ("crash", "SIGABRT"),
    "silu/fp16/forward/normal": ("crash", "SIGSEGV"),
    "exp/fp16/forward/normal": ("timeout", "no answer within 5 s"),
    "reduce_sum/fp16/forward/normal": ("error", "can't allocate memory"),
    "sqrt/fp16/forward/normal": ("fail", "got nan"),
    "where/fp16/forward/normal": ("fail", "elements out of bound"),
    "cast/fp16/forward/normal": ("fail", "shape (1,), expected (8, 16)"),
}
UNAFFECTED = ["add/fp16/backward/normal", "mul/bf16/forward/normal", "exp/bf16/forward/normal"]


def cases_of(path: Path) -> dict[str, dict[str, tuple[str, str]]]:
    report = json.loads(path.read_text())
    return {b["name"]: {c["id"]: (c["status"], c["detail"]) for c in b["cases"]} for b in report["backends"]}


def test_every_fault_is_that_cases_status_and_every_report_is_written(install_plugins, tmp_path):
    install_plugins("chaos")
    paths = {kind: tmp_path / f"r.{kind}" for kind in ("json", "html", "junit", "markdown")}
    argv = ["conformance", "--backend", "chaosnpu", "cpu", "--case", *EXPECTED, *UNAFFECTED, "--quiet"]
    argv += ["--timeout", "5", "--worker-memory", "3G"]
    for kind, path in paths.items():
        argv += [f"--{kind}", str(path)]
    assert main(argv) == 1
    found = cases_of(paths["json"])
    for case, (status, words) in EXPECTED.items():
        assert found["chaosnpu"][case][0] == status, (case, found["chaosnpu"][case])
        assert words in found["chaosnpu"][case][1], (case, found["chaosnpu"][case])
    assert all(found["chaosnpu"][case][0] == "pass" for case in UNAFFECTED)
    assert {status for status, _ in found["cpu"].values()} == {"pass"}
    assert len(found["cpu"]) == len(EXPECTED) + len(UNAFFECTED)
    for path in paths.values():
        assert path.stat().st_size > 0


def test_no_isolate_exit_and_interrupt_in_a_backend_are_case_errors_not_a_green_run(install_plugins, tmp_path):
    install_plugins("chaos")
    report = tmp_path / "r.json"
    argv = ["conformance", "--backend", "chaosnpu", "--no-isolate", "--quiet", "--json", str(report)]
    argv += ["--case", "mul/fp16/forward/normal", "relu/fp16/forward/normal", "mul/bf16/forward/normal"]
    assert main(argv) == 1  # before: SystemExit(0) ended the run with exit 0 and no report
    found = cases_of(report)["chaosnpu"]
    assert found["mul/fp16/forward/normal"] == (
        "error",
        "the backend raised SystemExit: 0; a backend must raise an exception, not stop the process",
    )
    assert found["relu/fp16/forward/normal"][0] == "error"
    assert found["mul/bf16/forward/normal"][0] == "pass"


def test_a_factory_that_exits_is_that_backends_error(install_plugins, tmp_path):
    install_plugins("chaos")
    with pytest.raises(mpx.BackendUnavailableError, match="failed to start: SystemExit: 7"):
        mpx.get_backend("chaosnpu-exitstart")
    report = tmp_path / "r.json"
    argv = ["conformance", "--backend", "chaosnpu-exitstart", "cpu", "--no-isolate", "--op", "add", "--quiet"]
    assert main([*argv, "--format", "fp16", "--json", str(report)]) == 1
    backends = {b["name"]: b for b in json.loads(report.read_text())["backends"]}
    assert not backends["chaosnpu-exitstart"]["available"]
    assert "SystemExit: 7" in backends["chaosnpu-exitstart"]["reason"]
    assert {c["status"] for c in backends["cpu"]["cases"]} == {"pass"}


def test_sys_exit_escaping_a_command_is_exit_1_and_says_so(monkeypatch, capsys):
    import mpx.cli.backends

    monkeypatch.setattr(mpx.cli.backends, "run", lambda args: sys.exit(0))
    assert main(["backends"]) == 1
    assert "stopped by SystemExit(0)" in capsys.readouterr().err


def test_the_users_ctrl_c_still_stops_an_in_process_run(tmp_path):
    mark = tmp_path / "hanging"
    argv = ["conformance", "--backend", "chaosnpu", "--no-isolate", "--case", "exp/fp16/forward/normal", "--quiet"]
    child = start_until_marked([*argv, "--json", str(tmp_path / "r.json")], mark)
    try:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130 and "interrupted" in err
