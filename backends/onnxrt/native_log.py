"""Keep onnxruntime and EP libraries quiet without changing the process for other threads.

onnxruntime itself is quieted through its own settings: the default logger's severity (`quiet()`), each
session's `log_severity_level` and each run's. Its Python layer's fallback prints are avoided by creating
sessions with `enable_fallback=0` (see providers.create_session). Only where a native library writes to
fd 2 anyway (a plugin EP logging INFO lines while it registers, an EP's error while a session is
created) `captured_native_output()` points fd 2 at a temporary file: under one process-wide lock, with
fd 2 always restored, and sys.stdout / sys.stderr never replaced.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

ERROR, FATAL = 3, 4  # onnxruntime's severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal

_fd_lock = threading.RLock()  # re-entrant: a capture inside a capture (register_all in create_session) nests
_quiet_lock = threading.Lock()
_quieted = False


def quiet() -> None:
    """Once per process: onnxruntime's default logger reports errors only (its own setting)."""
    global _quieted
    with _quiet_lock:
        if _quieted:
            return
        import onnxruntime as ort

        setter = getattr(ort, "set_default_logger_severity", None)
        if callable(setter):
            setter(ERROR)
        _quieted = True


def run_options() -> Any:
    """RunOptions that keep a run's error log off stderr (the error is raised as an exception anyway)."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = FATAL
    return options


class NativeLog:
    """What native code wrote to fd 2 during a capture; readable after the `with` block ends."""

    def __init__(self) -> None:
        self.text = ""

    def getvalue(self) -> str:
        return self.text


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):  # a closed or detached stream has nothing of ours to flush
            if stream is not None:
                stream.flush()


@contextlib.contextmanager
def captured_native_output() -> Iterator[NativeLog]:
    """Send fd 2 to a temporary file while native code runs; the text is in the yielded log afterwards.

    One thread at a time (a module-level RLock); fd 2 is restored in `finally`, whatever is raised.
    """
    quiet()
    log = NativeLog()
    with _fd_lock, tempfile.TemporaryFile(mode="w+b") as sink:
        _flush()  # what Python code already wrote goes where it was meant to, not into the sink
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            try:
                yield log
            finally:
                _flush()
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        sink.seek(0)
        log.text = sink.read().decode(errors="replace")
