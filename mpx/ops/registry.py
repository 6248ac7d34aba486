"""The registry of ops: every op mpx knows, by name."""

from __future__ import annotations

from ..errors import OpError, unknown_name_message
from .spec import OpSpec

_OPS: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add an op; a second op of the same name is an error."""
    if not isinstance(spec, OpSpec):
        raise OpError(f"register takes an OpSpec, not {type(spec).__name__}")
    if spec.name in _OPS:
        raise OpError(f"op {spec.name!r} is registered twice")
    _OPS[spec.name] = spec
    return spec


def get_op(name: str | OpSpec) -> OpSpec:
    """The op called `name`."""
    if isinstance(name, OpSpec):
        return name
    _load_definitions()
    if name not in _OPS:
        raise OpError(unknown_name_message("op", name, _OPS))
    return _OPS[name]


def all_ops() -> tuple[OpSpec, ...]:
    """Every registered op, in registration order."""
    _load_definitions()
    return tuple(_OPS.values())


def _load_definitions() -> None:
    from . import definitions  # noqa: F401 - registers the built-in ops on first use
