"""Report output paths, checked before a run: a bad path fails at once instead of after every case has run.

The reports themselves are written with mpx._io.atomic_write_text (never a half-written file).
"""

from __future__ import annotations

from pathlib import Path

from mpx import _io
from mpx._io import WriteError
from mpx.errors import ConformanceError


def check_writable(path: str | Path, what: str = "report") -> Path:
    """Fail now, before any case runs, if `path` cannot be written."""
    try:
        return _io.check_writable(path, what)
    except WriteError as error:
        raise ConformanceError(str(error)) from None
