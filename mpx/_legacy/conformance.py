"""mpx 0.1 names of mpx.conformance modules that 0.2 renamed or replaced by Status traits.

Only read through the MOVED entries of mpx._legacy (as the last home of each old module).
"""

from __future__ import annotations

from mpx._io import atomic_write_text as write_atomic
from mpx.conformance.status import Status

# mpx.conformance.matrix
NOT_PASSING = tuple(status for status in Status if status.problem)
# mpx.conformance.junit
FAILURE = tuple(status for status in Status if status.junit == "failure")
ERROR = tuple(status for status in Status if status.junit == "error")
SKIPPED = tuple(status for status in Status if status.junit == "skipped")
# mpx.conformance.terminal
COLOURS = {status: status.colour.terminal for status in Status}

__all__ = ["COLOURS", "ERROR", "FAILURE", "NOT_PASSING", "SKIPPED", "write_atomic"]
