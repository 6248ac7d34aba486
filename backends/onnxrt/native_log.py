"""Capture what onnxruntime and EP libraries print natively (Python prints and the C++ log on fd 2)."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def captured_native_output() -> Iterator[io.StringIO]:
    """Capture what onnxruntime prints (Python prints and the C++ log on fd 2) while an EP is tried."""
    text = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, contextlib.redirect_stdout(text):
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.write(sink.read().decode(errors="replace"))
