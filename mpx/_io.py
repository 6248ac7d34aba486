"""Atomic file writes: readers see the old file or the new one, never half of one.

A write goes to a temporary file `.{name}.{pid}.XXXXXXXX.tmp` beside the target, is fsynced, renamed onto the
target with os.replace, and the folder is fsynced. Targets that are not regular files (a device such as /dev/null,
a FIFO, a folder) are refused, and so are symlinks unless the caller asks to follow them. Temporary files that
earlier saves left behind when they were killed are removed before the next save of the same target.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from mpx.errors import MpxError

STALE_S = 10.0  # a temporary file without a live owner's pid is stale once untouched this long


class WriteError(MpxError, OSError):
    """An output path mpx will not write (not a regular file, a symlink) or a write that failed (disk full)."""


def check_target(path: str | os.PathLike[str], follow_symlinks: bool = False, what: str = "file") -> Path:
    """The path to write for `path`: refuses targets that exist and are not regular files, and symlinks.

    With `follow_symlinks`, a symlink is resolved and its target (which must be a regular file or absent) is
    returned instead.
    """
    target = Path(path)
    if str(path) == "":
        raise WriteError(f"the {what} path is empty; give a file name")
    try:
        info = target.lstat()
    except FileNotFoundError:
        return target
    except OSError as error:
        raise WriteError(f"cannot write {what} {str(target)!r}: {error.strerror or error}") from None
    if stat.S_ISLNK(info.st_mode):
        if not follow_symlinks:
            raise WriteError(
                f"{what} path {str(target)!r} is a symlink; give the file it points to "
                f"({os.path.realpath(target)!r}) or another path"
            )
        return check_target(os.path.realpath(target), False, what)
    if not stat.S_ISREG(info.st_mode):
        kind = _kind(info.st_mode)
        raise WriteError(f"{what} path {str(target)!r} is {kind}, not a regular file; give a file name")
    return target


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *, follow_symlinks: bool = False
) -> Path:
    """Call `write(handle)` on a temporary file beside `path`, fsync it, then os.replace it onto `path`.

    The file gets the permissions of the one it replaces, or those of any new file the user writes (0666
    less the umask; mkstemp's own 0600 would hide a report from its readers). On any failure the temporary
    file is removed and `path` is left as it was; an OSError (disk full, permissions) becomes a WriteError.
    """
    target = check_target(path, follow_symlinks)
    parent = target.parent
    clean_stale_temporaries(target)
    recorder: _Recorder | None = None
    temporary = ""
    try:
        handle, temporary = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
        os.chmod(temporary, _mode_for(target))
        with os.fdopen(handle, "wb") as stream:
            recorder = _Recorder(stream)
            write(recorder)  # type: ignore[arg-type]
            stream.flush()
            os.fsync(stream.fileno())
        check_target(target)  # it may have become a symlink or a device since the check above
        os.replace(temporary, target)
    except BaseException as error:
        if temporary:
            Path(temporary).unlink(missing_ok=True)
        failure = error if isinstance(error, OSError) else (recorder.error if recorder else None)
        if failure is None or isinstance(error, WriteError):
            raise
        raise _write_error(target, failure, recorder.written if recorder else 0) from None
    _fsync_folder(parent)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, follow_symlinks: bool = False) -> Path:
    """Write `data` to `path` atomically."""
    try:
        return atomic_write(path, lambda stream: stream.write(data), follow_symlinks=follow_symlinks)
    except WriteError as error:
        if error.errno == errno.ENOSPC:
            raise _write_error(Path(path), error, len(data), exact=True) from None
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, *, follow_symlinks: bool = False) -> Path:
    """Write `text` (UTF-8; lone surrogates become '?') to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8", "replace"), follow_symlinks=follow_symlinks)


def clean_stale_temporaries(target: Path) -> list[Path]:
    """Remove this target's temporary files left by killed saves; returns what was removed.

    Only names of the exact pattern `.{name}.{pid}.XXXXXXXX.tmp` (or `.{name}.XXXXXXXX.tmp` of older versions)
    owned by this user are considered: one whose pid is no longer running is removed, one without a pid once
    untouched for STALE_S seconds. Files of live saves (another process, another thread) are left alone.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:(\d+)\.)?[A-Za-z0-9_]{{6,}}\.tmp")
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        candidate = target.parent / name
        try:
            info = candidate.lstat()
            if not stat.S_ISREG(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
                continue
            pid = match.group(1)
            stale = not _alive(int(pid)) if pid else time.time() - info.st_mtime > STALE_S
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue
    return removed


class _Recorder:
    """The write handle given to `write`: counts bytes and keeps the OSError a writer may hide (torch.save)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.written = 0
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            count = self._stream.write(data)
        except OSError as error:
            self.error = error
            raise
        self.written += count or 0
        return count

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _write_error(target: Path, error: OSError, size: int, exact: bool = False) -> WriteError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f", {shutil.disk_usage(target.parent).free} bytes free there"
        except OSError:
            free = ""
        needed = f"{size} bytes needed" if exact else f"at least {size} bytes needed"
        message = f"disk full: cannot write {str(target)!r} ({needed}{free}); free space or choose another folder"
    else:
        message = f"cannot write {str(target)!r}: {error.strerror or error}"
    failure = WriteError(message)
    failure.errno = error.errno
    return failure


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; some file systems cannot fsync a folder, which is not an error."""
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _mode_for(target: Path) -> int:
    """The permission bits `target` keeps, or a new file's (0666 less the process umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def check_writable(path: str | os.PathLike[str], what: str = "file") -> Path:
    """Fail now, before any work, if `path` cannot be written (WriteError, one line naming the fix)."""
    target = Path(path)
    if not os.path.islink(target) and target.is_dir():
        raise WriteError(
            f"{what} path {str(target)!r} is a directory; give a file name such as {str(target / 'report')!r}"
        )
    check_target(target, what=what)  # the writers' rules: no devices, FIFOs or other special files, no symlinks
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise WriteError(f"cannot write {what} {str(target)!r}: folder {str(parent)!r} does not exist; create it first")
    try:
        probe_folder(parent, f".{target.name}.")
    except OSError as error:
        raise WriteError(
            f"cannot write {what} {str(target)!r}: {error.strerror or error}; choose a writable path"
        ) from None
    if target.exists() and not os.access(target, os.W_OK):
        raise WriteError(f"cannot write {what} {str(target)!r}: the file is read-only; choose another path")
    return target


def probe_folder(folder: Path, prefix: str = ".mpx.") -> None:
    """Create and remove a file in `folder`: raises the OSError a real write there would meet."""
    handle, probe = tempfile.mkstemp(prefix=prefix, suffix=".probe", dir=folder)
    os.close(handle)
    os.unlink(probe)
