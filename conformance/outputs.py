"""Report files: checked for writability before a run, written atomically after it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mpx.errors import ConformanceError


def check_writable(path: str | Path, what: str = "report") -> Path:
    """Fail now, before any case runs, if `path` cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise ConformanceError(
            f"{what} path {str(target)!r} is a directory; give a file name such as {str(target / 'report')!r}"
        )
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


def write_atomic(path: str | Path, text: str) -> Path:
    """Write through a temporary file in the same folder and os.replace: never a half-written report."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(target.parent) else "."
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return target
