"""A vendor plugin that imports fine but calls sys.exit in its hook."""

from __future__ import annotations

import sys

from mpx import BackendSpec, hookimpl


@hookimpl
def mpx_backends() -> list[BackendSpec]:
    sys.exit(3)
