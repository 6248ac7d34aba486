"""Reading a JSON report someone hands to `mpx conformance diff`: only a regular, bounded, UTF-8 file, and
every field the diff uses of the type it must have (a ConformanceError naming the first one that is not)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from mpx.errors import ConformanceError

MAX_REPORT_BYTES = 256 << 20  # the full suite on four backends writes a few MiB
_STRINGS = {"backend": ("name",), "case": ("id", "op", "format", "pass", "input_class", "status")}
_OPTIONAL_STRINGS = {"backend": ("reason",), "case": ("detail", "support", "measured", "model")}


def read_json(path: str | Path) -> Any:
    """The parsed JSON of the regular file `path` (at most MAX_REPORT_BYTES, UTF-8, nested within reason)."""
    shown = repr(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except OSError as error:
        raise ConformanceError(f"cannot read report {shown}: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConformanceError(f"report {shown} is not a regular file; pass a file written by --json PATH")
        if info.st_size > MAX_REPORT_BYTES:
            raise ConformanceError(f"report {shown} is {info.st_size} bytes, over the {MAX_REPORT_BYTES} byte limit")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_REPORT_BYTES + 1)
    except OSError as error:
        raise ConformanceError(f"cannot read report {shown}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_REPORT_BYTES:
        raise ConformanceError(f"report {shown} grew past the {MAX_REPORT_BYTES} byte limit while being read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConformanceError(f"report {shown} is not UTF-8 (byte {error.start}); is it a JSON report?") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ConformanceError(f"report {shown} is nested too deeply to be a conformance report") from None
    except ValueError as error:  # JSONDecodeError, and integers too long to convert
        raise ConformanceError(
            f"{shown} is not JSON ({error}); pass a report written by 'mpx conformance --json PATH'"
        ) from None


def check_types(data: dict[str, Any], source: str) -> None:
    """Raise ConformanceError at the first field the diff reads that has the wrong JSON type."""
    backends = _field(data, "backends", list, source, "the report")
    for i, backend in enumerate(backends):
        where = f"backends[{i}]"
        _expect(backend, dict, source, where)
        _strings(backend, "backend", source, where)
        _field(backend, "available", bool, source, where)
        for j, case in enumerate(_field(backend, "cases", list, source, where, [])):
            _expect(case, dict, source, f"{where}.cases[{j}]")
            _strings(case, "case", source, f"{where}.cases[{j}]")
        for j, scenario in enumerate(_field(backend, "scenarios", list, source, where, [])):
            here = f"{where}.scenarios[{j}]"
            _expect(scenario, dict, source, here)
            for key in ("scenario", "format"):
                _field(scenario, key, str, source, here)
            _field(scenario, "ready", bool, source, here)
            coverage = _field(scenario, "coverage", (int, float), source, here)
            if isinstance(coverage, bool):
                raise ConformanceError(f"{source}: {here}.coverage must be a number, not a boolean")
            _field(scenario, "missing", list, source, here, [])


def _strings(item: dict[str, Any], kind: str, source: str, where: str) -> None:
    for key in _STRINGS[kind]:
        _field(item, key, str, source, where)
    for key in _OPTIONAL_STRINGS[kind]:
        _field(item, key, str, source, where, "")


def _field(item: dict[str, Any], key: str, kind: Any, source: str, where: str, default: Any = None) -> Any:
    if key not in item and default is not None:
        return default
    if key not in item:
        raise ConformanceError(f"{source}: {where} has no {key!r}; is it a report written by --json PATH?")
    return _expect(item[key], kind, source, f"{where}.{key}")


def _expect(value: Any, kind: Any, source: str, where: str) -> Any:
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise ConformanceError(f"{source}: {where} must be of JSON type {names}, not {type(value).__name__}")
    return value
