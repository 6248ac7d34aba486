"""Calling an external plugin's code so that it cannot stop or hang mpx.

Each call runs in a daemon thread that catches everything, `SystemExit` and `KeyboardInterrupt` included,
and is waited for at most `timeout()` seconds (env MPX_PLUGIN_TIMEOUT). A hung thread cannot be killed:
it is left running, and what it would have returned is ignored. A Ctrl-C of the user still reaches the
main thread, which is the one that waits.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

TIMEOUT_ENV = "MPX_PLUGIN_TIMEOUT"
DEFAULT_TIMEOUT = 10.0


def timeout() -> float:
    """Seconds a plugin's import, hook or availability check may take (MPX_PLUGIN_TIMEOUT, default 10)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIMEOUT


@dataclass
class Outcome:
    """What one bounded call gave: its value, or what it raised, or that it did not finish in time."""

    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    def problem(self) -> str:
        """'SystemExit: 3', or 'did not finish within 2 s (...)'; '' when the call succeeded."""
        if self.timed_out:
            return (
                f"did not finish within {self.seconds:g} s ({TIMEOUT_ENV}); "
                "its thread is left running and its result ignored"
            )
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        return ""

    def describe(self, subject: str, action: str = "") -> str:
        """'<subject> did not finish within ...' for a hang, '<action>SystemExit: 3' for what it raised."""
        return f"{subject} {self.problem()}".strip() if self.timed_out else f"{action}{self.problem()}"


def here(function: Callable[[], Any]) -> Outcome:
    """An unbounded call in this thread (a built-in plugin's), as an Outcome; only an Exception is caught."""
    try:
        return Outcome(value=function())
    except Exception as error:
        return Outcome(error=error)


class _Call(threading.Thread):
    def __init__(self, name: str, function: Callable[[], Any]) -> None:
        super().__init__(name=name, daemon=True)
        self.function = function
        self.outcome = Outcome()

    def run(self) -> None:
        try:
            self.outcome.value = self.function()
        except BaseException as error:  # noqa: BLE001 - a plugin's SystemExit / KeyboardInterrupt is its error
            self.outcome.error = error


def call_all(calls: Mapping[Hashable, Callable[[], Any]], seconds: float | None = None) -> dict[Hashable, Outcome]:
    """Run every call in its own daemon thread at once; each gets at most `seconds` (all share one deadline)."""
    limit = timeout() if seconds is None else seconds
    threads = {key: _Call(f"mpx-plugin {key}", function) for key, function in calls.items()}
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + limit
    outcomes = {}
    for key, thread in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            outcomes[key] = Outcome(timed_out=True, seconds=limit)
        else:
            outcomes[key] = thread.outcome
    return outcomes


def call(function: Callable[[], Any], name: str = "call", seconds: float | None = None) -> Outcome:
    """One bounded call (see call_all)."""
    return call_all({name: function}, seconds)[name]
