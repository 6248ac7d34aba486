"""Hostile external plugins (tests/fake_plugins): an exit or a hang at import, in the hook or in unavailable()
is recorded as that plugin's error, within MPX_PLUGIN_TIMEOUT, and mpx goes on (issue 16, point 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import mpx
from mpx.plugins import bounded
from mpx.plugins.manager import BackendEntry

FAKE_PLUGINS = Path(__file__).parent / "fake_plugins"
TIMEOUT = 2.0
# a fresh `mpx backends` imports torch and probes onnxruntime: a few seconds before any plugin is asked
STARTUP_ALLOWANCE = 25.0


def run_backends(*plugins: str) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m mpx backends` in a fresh interpreter with the fake plugins on its path; (result, seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "MPX_DISABLE_PLUGINS"}
    paths = [str(FAKE_PLUGINS / p) for p in plugins]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, env.get("PYTHONPATH", "")]))
    env["MPX_PLUGIN_TIMEOUT"] = str(TIMEOUT)
    env["COLUMNS"] = "400"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mpx", "backends"], capture_output=True, text=True, env=env, timeout=300
    )
    return done, time.monotonic() - start


def row(output: str, name: str) -> str:
    rows = [line for line in output.splitlines() if line.startswith(f"│ {name} ")]
    assert len(rows) == 1, f"no single table row for {name!r} in:\n{output}"
    return rows[0]


def assert_builtins_listed(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    for name in ("cpu", "cuda", "onnxrt"):
        row(done.stdout, name)
    assert "│ yes " in row(done.stdout, "cpu")


@pytest.mark.parametrize(
    ("plugin", "name", "error"),
    [
        ("exit_import", "exitnpu", "failed to load: SystemExit: 3"),
        ("interrupt_import", "interruptnpu", "failed to load: KeyboardInterrupt: interrupted while probing"),
        ("exit_hook", "exithooknpu", "mpx_backends() raised SystemExit: 3"),
    ],
)
def test_a_plugin_that_exits_is_listed_with_its_error(plugin: str, name: str, error: str) -> None:
    done, _ = run_backends(plugin, "good")
    assert_builtins_listed(done)
    assert error in row(done.stdout, name)
    assert "│ yes " in row(done.stdout, "goodnpu")


def test_a_plugin_that_hangs_at_import_is_cut_off_after_the_timeout() -> None:
    done, seconds = run_backends("hang_import", "good")
    assert_builtins_listed(done)
    assert "failed to load: its import did not finish within 2 s (MPX_PLUGIN_TIMEOUT)" in row(done.stdout, "hangnpu")
    assert "│ yes " in row(done.stdout, "goodnpu")
    assert seconds < TIMEOUT + STARTUP_ALLOWANCE


def test_a_plugin_whose_availability_check_hangs_or_exits_is_listed_with_that() -> None:
    done, seconds = run_backends("hang_unavailable")
    assert_builtins_listed(done)
    assert "availability check did not finish within 2 s" in row(done.stdout, "slownpu")
    assert "availability check failed: SystemExit: 4" in row(done.stdout, "slownpu-exit")
    assert seconds < TIMEOUT + STARTUP_ALLOWANCE


def test_every_hostile_plugin_at_once_costs_one_timeout_per_stage() -> None:
    hostile = ("exit_import", "interrupt_import", "hang_import", "exit_hook", "hang_unavailable")
    done, seconds = run_backends(*hostile)
    assert_builtins_listed(done)
    for name in ("exitnpu", "interruptnpu", "hangnpu", "exithooknpu", "slownpu", "slownpu-exit"):
        assert "│ no " in row(done.stdout, name)
    assert seconds < 2 * TIMEOUT + STARTUP_ALLOWANCE


def test_mixed_precision_still_builds_when_a_plugin_exits_at_import() -> None:
    env = {**os.environ, "PYTHONPATH": str(FAKE_PLUGINS / "exit_import"), "MPX_PLUGIN_TIMEOUT": str(TIMEOUT)}
    env.pop("MPX_DISABLE_PLUGINS", None)
    probe = (
        "import torch, mpx\n"
        "model = torch.nn.Linear(2, 2)\n"
        "mp = mpx.MixedPrecision(model, torch.optim.SGD(model.parameters(), lr=0.1), policy='fp16-mixed')\n"
        "print('ok', [e.reason for e in mpx.list_backends() if e.name == 'exitnpu'])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ok ['failed to load: SystemExit: 3']" in done.stdout


def entry(name: str) -> BackendEntry:
    (found,) = [e for e in mpx.list_backends() if e.name == name]
    return found


def test_in_process_a_hung_check_is_asked_once_and_then_remembered(
    install_plugins: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MPX_PLUGIN_TIMEOUT", "0.5")
    install_plugins("hang_unavailable", "exit_hook", "good")
    start = time.monotonic()
    assert "did not finish within 0.5 s" in entry("slownpu").reason
    assert "SystemExit: 3" in entry("exithooknpu").reason
    with pytest.raises(mpx.BackendUnavailableError, match="slownpu.*did not finish within 0.5 s"):
        mpx.get_backend("slownpu")
    with pytest.raises(mpx.BackendUnavailableError, match="SystemExit: 4"):
        mpx.get_backend("slownpu-exit")
    assert mpx.get_backend("goodnpu").name == "goodnpu"
    assert time.monotonic() - start < 3.0  # the hung check was not waited for again


@pytest.mark.parametrize(
    ("value", "expected"), [("", 10.0), ("2", 2.0), ("0.25", 0.25), ("0", 10.0), ("-1", 10.0), ("nan", 10.0)]
)
def test_the_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, expected: float) -> None:
    monkeypatch.setenv("MPX_PLUGIN_TIMEOUT", value)
    assert bounded.timeout() == expected


def test_a_bounded_call_keeps_base_exceptions_and_values() -> None:
    assert bounded.call(lambda: 7).value == 7
    outcome = bounded.call(lambda: sys.exit(5))
    assert (outcome.ok, outcome.problem()) == (False, "SystemExit: 5")
    hung = bounded.call(lambda: time.sleep(60), seconds=0.1)
    assert hung.timed_out and "did not finish within 0.1 s" in hung.describe("it")
