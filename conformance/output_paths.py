"""Report output paths, checked before a run: a bad path fails at once instead of after every case has run.

The reports themselves are written with mpx._io.atomic_write_text (never a half-written file).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mpx._io import WriteError, check_target
from mpx.errors import ConformanceError


def check_writable(path: str | Path, what: str = "report") -> Path:
    """Fail now, before any case runs, if `path` cannot be written."""
    target = Path(path)
    if not os.path.islink(target) and target.is_dir():
        raise ConformanceError(
            f"{what} path {str(target)!r} is a directory; give a file name such as {str(target / 'report')!r}"
        )
    try:  # the writers' rules: no devices, FIFOs or other special files, no symlinks
        check_target(target, what=what)
    except WriteError as error:
        raise ConformanceError(str(error)) from None
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ConformanceError(
            f"cannot write {what} {str(target)!r}: folder {str(parent)!r} does not exist; create it first"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ConformanceError(
            f"cannot write {what} {str(target)!r}: {error.strerror or error}; choose a writable path"
        ) from None
    if target.exists() and not os.access(target, os.W_OK):
        raise ConformanceError(f"cannot write {what} {str(target)!r}: the file is read-only; choose another path")
    return target
