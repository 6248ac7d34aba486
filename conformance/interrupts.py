"""Telling the user's Ctrl-C from a backend's own `KeyboardInterrupt` while cases run in this process.

While `watch()` is active, every SIGINT this process receives is counted before Python raises its
KeyboardInterrupt; a KeyboardInterrupt raised with no SIGINT behind it came from backend code, and the
runner makes it that case's error instead of ending the run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_received = 0


def received() -> int:
    """How many SIGINTs arrived while a watch() was active (compare before and after a call)."""
    return _received


@contextlib.contextmanager
def watch() -> Iterator[None]:
    """Count SIGINTs, then do what the previous handler did; a no-op off the main thread or if SIGINT is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # ignored (a worker) or default: nothing to tell apart
        yield
        return

    def count(signum: int, frame: FrameType | None) -> None:
        global _received
        _received += 1
        previous(signum, frame)

    signal.signal(signal.SIGINT, count)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
