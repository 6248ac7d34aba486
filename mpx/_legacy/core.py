"""mpx 0.1 names of core modules that 0.2 renamed; read only through the MOVED entries of mpx._legacy."""

from __future__ import annotations

from mpx.cli.backends import run as run_backends
from mpx.cli.conformance import run_diff as diff
from mpx.cli.formats import run as run_formats
from mpx.training.checkpoint import write_checkpoint_file as atomic_write

__all__ = ["atomic_write", "diff", "run_backends", "run_formats"]
