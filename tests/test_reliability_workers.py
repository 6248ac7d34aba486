"""Isolated workers under process faults (issue 16, point 4): a hanging backend factory is cut off by --timeout,
SIGTERM / SIGINT / kill -9 leave no worker or forkserver behind, --workers is bounded by the machine and
--worker-memory caps each worker. Real processes throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaos_helpers import chaos_env, start_until_marked

from mpx.cli import main
from mpx.conformance.cases import generate
from mpx.conformance.isolation import BackendRef, run_isolated
from mpx.formats import format as lookup_format

STARTUP_ALLOWANCE = 40.0  # a fresh `mpx` imports torch, then the forkserver imports it again, on a busy machine


def test_a_hanging_backend_factory_ends_with_the_per_case_timeout(tmp_path):
    report = tmp_path / "r.json"
    argv = ["conformance", "--backend", "chaosnpu-hangstart", "--op", "add", "--format", "fp16", "--timeout", "2"]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mpx", *argv, "--quiet", "--json", str(report)],
        env=chaos_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - start
    assert done.returncode == 1, done.stderr
    (backend,) = json.loads(report.read_text())["backends"]
    assert len(backend["cases"]) >= 6  # every add/fp16 case, each the build's error
    for case in backend["cases"]:
        assert case["status"] == "error"
        assert "building it did not finish within 2 s" in case["detail"]
    assert seconds < 2 + STARTUP_ALLOWANCE  # before: a fixed 300 s start timeout, tried twice


def proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> set[int]:
    children, found, stack = proc_children(), set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts processes through /proc (Linux)")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_a_signal_to_the_run_leaves_no_worker_or_forkserver_behind(tmp_path, sig, code):
    mark = tmp_path / "hanging"
    cases = ["exp/fp16/forward/normal", "exp/fp16/forward/special"]
    argv = ["conformance", "--backend", "chaosnpu", "--case", *cases, "--timeout", "300", "--workers", "2"]
    child = start_until_marked([*argv, "--quiet", "--json", str(tmp_path / "r.json")], mark)
    try:
        hung = int(mark.read_text().split()[0])
        family = descendants(child.pid)
        assert hung in family and len(family) >= 3  # the forkserver, the hung worker, the idle one
        child.send_signal(sig)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == code, err
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in family if alive(pid)], "processes of the run outlived it"
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("value", "message"), [("0", "'0' must be an integer >= 1"), ("-3", "'-3' must be")])
def test_workers_below_one_is_one_line_and_exit_2(capsys, value, message):
    assert main(["conformance", "--backend", "cpu", "--op", "add", "--workers", value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_workers_are_capped_by_the_cases_and_the_cpus(monkeypatch):
    from mpx.conformance import isolation, worker_limits

    monkeypatch.setattr(worker_limits, "cpus", lambda: 2)
    assert worker_limits.worker_count(1000, 5000) == (2, "2 CPU(s)")
    assert worker_limits.worker_count(1000, 1) == (1, "")
    monkeypatch.setattr(worker_limits, "available_memory", lambda: 3 << 30)
    assert worker_limits.worker_count(2, 10, worker_memory=2 << 30)[0] == 1
    started = []

    class Counted(isolation._Worker):
        def __init__(self, *args, **kwargs) -> None:
            started.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(isolation, "_Worker", Counted)
    cases = generate([lookup_format("fp16")], ["add"])
    results, _ = run_isolated(BackendRef("cpu"), cases, timeout=60, workers=1000)
    assert [r.status for r in results] == ["pass"] * len(cases)
    assert len(started) == 2  # before: one process per case, up to --workers


def test_the_cli_says_when_the_machine_caps_workers(capsys, monkeypatch, tmp_path):
    from mpx.conformance import worker_limits

    monkeypatch.setattr(worker_limits, "cpus", lambda: 1)
    argv = ["conformance", "--backend", "cpu", "--case", "add/fp16/forward/normal", "add/fp16/forward/special"]
    assert main([*argv, "--isolate", "--workers", "1000", "--json", str(tmp_path / "r.json")]) == 0
    assert "--workers 1000 capped at 1 (1 CPU(s))" in capsys.readouterr().err


def test_worker_memory_below_what_a_worker_maps_is_every_cases_error():
    cases = generate(case_ids=["add/fp16/forward/normal", "add/bf16/forward/normal"])
    results, _ = run_isolated(BackendRef("cpu"), cases, timeout=60, workers=1, memory=16 << 20)
    assert [r.status for r in results] == ["error", "error"]
    assert "--worker-memory 16 MiB is below what a worker maps" in results[0].detail


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--worker-memory", "lots"], "'lots' is not a memory size; write e.g. 2G"),
        (["--worker-memory", "0"], "is not a memory size"),
        (["--worker-memory", "2G", "--no-isolate"], "--worker-memory limits child processes"),
    ],
)
def test_bad_worker_memory_is_one_line_and_exit_2(capsys, argv, message):
    assert main(["conformance", "--backend", "cpu", "--op", "add", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "size"), [("4096", 4096), ("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("64kb", 64 << 10)]
)
def test_memory_sizes(text, size):
    from mpx.conformance import worker_limits

    assert worker_limits.parse_size(text) == size
