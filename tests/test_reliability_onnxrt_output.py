"""The onnxrt backend keeps onnxruntime quiet without changing the process: sys.stdout / sys.stderr stay the
same objects and fds 1 / 2 the same files, even when backends are built and run from many threads (issue 16,
point 3)."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import mpx
from mpx.backends.onnxrt import native_log, providers
from mpx.backends.onnxrt.builder import FLOAT, GraphBuilder
from mpx.formats import FP32
from mpx.ops import get_op
from mpx.plugins.manager import resolve

pytest.importorskip("onnxruntime")
THREADS = 8


def identity(fd: int) -> tuple[int, int]:
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


def process_state() -> tuple[object, ...]:
    return sys.stdout, sys.stderr, identity(1), identity(2)


def build_and_run(index: int, start: threading.Barrier) -> list[float]:
    start.wait()
    name = ("onnxrt", "onnxrt:CPUExecutionProvider")[index % 2]
    backend = mpx.get_backend(name)
    a, b = torch.arange(4, dtype=torch.float32), torch.full((4,), float(index))
    results = []
    for op in ("add", "mul", "relu"):
        args = (a, b) if op != "relu" else (a - 2,)
        (out,) = backend.run(get_op(op), FP32, args)
        results.extend(out.tolist())
    return results


def test_backends_built_and_run_from_8_threads_leave_stdout_stderr_and_fds_as_they_were() -> None:
    assert resolve("onnxrt") is None, resolve("onnxrt")
    before = process_state()
    start = threading.Barrier(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(build_and_run, range(THREADS), [start] * THREADS))
    assert process_state() == before
    for index, got in enumerate(results):
        assert got == [i + index for i in range(4)] + [i * index for i in range(4)] + [0.0, 0.0, 0.0, 1.0]


def test_sessions_created_from_8_threads_at_once_leave_the_process_as_it_was() -> None:
    builder = GraphBuilder("t")
    x = builder.input("x", FLOAT, (4,))
    builder.output(builder.node("Add", [x, x]), FLOAT)
    model = builder.model().SerializeToString()
    where = providers.Target(providers.CPU)
    before = process_state()

    def create(_: int) -> None:
        for _ in range(10):
            providers.create_session(model, where, providers.session_options(where))

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, range(THREADS)))
    assert process_state() == before


def test_a_capture_gets_what_native_code_writes_on_fd_2_and_restores_it() -> None:
    before = process_state()
    with native_log.captured_native_output() as log:
        assert (sys.stdout, sys.stderr) == before[:2]  # the Python streams are never replaced
        os.write(2, b"native INFO line\n")
        with native_log.captured_native_output() as inner:  # nested (re-entrant) captures
            os.write(2, b"inner\n")
    assert (log.getvalue(), inner.getvalue()) == ("native INFO line\n", "inner\n")
    assert process_state() == before


def test_a_capture_restores_fd_2_when_the_code_inside_raises() -> None:
    before = process_state()
    with pytest.raises(KeyboardInterrupt), native_log.captured_native_output():
        raise KeyboardInterrupt
    assert process_state() == before


def test_a_failing_provider_prints_no_fallback_banner(capfd: pytest.CaptureFixture[str]) -> None:
    reason = providers.probe("CUDAExecutionProvider", (("device_id", "99"),))
    if reason is None:
        pytest.skip("the CUDA EP runs here even on device 99")
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err and "Falling back" not in out + err
    assert (out, err) == ("", "")


def test_onnxruntime_is_quieted_through_its_own_settings() -> None:
    import onnxruntime as ort

    native_log.quiet()
    where = providers.Target(providers.CPU)
    assert providers.session_options(where).log_severity_level == native_log.ERROR
    assert native_log.run_options().log_severity_level == native_log.FATAL
    assert isinstance(native_log.run_options(), ort.RunOptions)
