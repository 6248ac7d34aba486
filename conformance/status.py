"""The one Status enum of a conformance case, and everything the suite and its writers derive from a status.

The values are the JSON strings of schema "mpx-conformance/1". Each status carries how bad it is (severity, for
worst-of and sorting), whether it passes, whether the case ran with right numbers, its JUnit kind, its colours
and a one-line meaning, so that the runner, roll-up, diff, writers and pytest plugin cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Literal, NamedTuple

JunitKind = Literal["passed", "failure", "error", "skipped"]


class Colour(NamedTuple):
    """How a status looks: a rich style in the terminal, a cell background and text colour in HTML."""

    terminal: str
    background: str
    text: str = ""  # '' keeps the page's text colour


class _Traits(NamedTuple):
    severity: int
    runs: bool
    junit: JunitKind
    colour: Colour
    meaning: str


class Status(str, Enum):
    """What happened to one case on one backend (the `status` field of the JSON report)."""

    PASS = "pass"
    FAIL = "fail"
    UNSUPPORTED = "unsupported"
    UPCAST = "upcast"
    DOWNCAST = "downcast"
    FALLBACK = "fallback"
    ERROR = "error"
    CRASH = "crash"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def severity(self) -> int:
        """How bad the status is: a cell that folds several cases shows the worst (highest)."""
        return _TRAITS[self].severity

    @property
    def passes(self) -> bool:
        """Right numbers, in the asked format, on the backend's device."""
        return self is Status.PASS

    @property
    def runs(self) -> bool:
        """The case gave right numbers, perhaps not as asked (a wider format, or off the device)."""
        return _TRAITS[self].runs

    @property
    def junit(self) -> JunitKind:
        """How JUnit XML and pytest report it: passed, failure, error or skipped."""
        return _TRAITS[self].junit

    @property
    def problem(self) -> bool:
        """A failure or an error: listed under the report's failures."""
        return self.junit in ("failure", "error")

    @property
    def colour(self) -> Colour:
        return _TRAITS[self].colour

    @property
    def meaning(self) -> str:
        """One line for legends and help texts."""
        return _TRAITS[self].meaning


_TRAITS: dict[Status, _Traits] = {
    Status.PASS: _Traits(0, True, "passed", Colour("green", "#4caf50", "#fff"), "right numbers, as asked"),
    Status.UPCAST: _Traits(
        1, True, "skipped", Colour("yellow", "#fdd835"), "runs, but computed in a wider format than asked"
    ),
    Status.FALLBACK: _Traits(
        2, True, "skipped", Colour("dark_orange", "#fb8c00"), "runs, but not on the backend's device"
    ),
    Status.UNSUPPORTED: _Traits(
        3, False, "skipped", Colour("bright_black", "#bdbdbd"), "the backend does not run this op in this format"
    ),
    Status.DOWNCAST: _Traits(
        4,
        False,
        "failure",
        Colour("orange_red1", "#f4511e", "#fff"),
        "runs on the device, but in a narrower format than asked",
    ),
    Status.FAIL: _Traits(5, False, "failure", Colour("red", "#e53935", "#fff"), "wrong numbers"),
    Status.ERROR: _Traits(6, False, "error", Colour("magenta", "#8e24aa", "#fff"), "the backend raised an exception"),
    Status.TIMEOUT: _Traits(
        7, False, "error", Colour("red3", "#6d4c41", "#fff"), "no answer within the per-case timeout"
    ),
    Status.CRASH: _Traits(8, False, "error", Colour("bold red", "#212121", "#fff"), "the process running it died"),
}

STATUSES: tuple[Status, ...] = tuple(Status)


def worst(statuses: Iterable[Status | str]) -> Status:
    """The most severe of several statuses (a matrix cell, a scenario requirement)."""
    return max((Status(status) for status in statuses), key=lambda status: status.severity)
