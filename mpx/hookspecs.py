"""The hooks a plugin implements (entry-point group "mpx")."""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from .backend_spec import BackendSpec

PROJECT = "mpx"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mpx_backends() -> Iterable[BackendSpec]:
    """Yield or return the BackendSpecs this plugin provides.

    Keep it cheap: build nothing here, import heavy modules inside the spec's factory.
    """
