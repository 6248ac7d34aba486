"""A plugin that yields a dict where a BackendSpec belongs."""

from mpx import hookimpl


@hookimpl
def mpx_backends():
    yield {"name": "dictnpu", "factory": None}
