"""A plugin whose spec has a name mpx cannot select (spaces, upper case)."""

from mpx import BackendSpec, hookimpl


@hookimpl
def mpx_backends():
    yield BackendSpec(name="Bad Name", factory=lambda **options: None)
