"""A second plugin that claims the name `goodnpu`."""

from __future__ import annotations

from collections.abc import Iterator

from mpx import BackendSpec, hookimpl


@hookimpl
def mpx_backends() -> Iterator[BackendSpec]:
    yield BackendSpec(name="goodnpu", factory=lambda **options: None)
