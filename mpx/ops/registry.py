"""The registry of ops: every op mpx knows, by name.

The table is built from the built-in definitions (`definitions.SPECS_BY_FAMILY`) on first lookup, so
`import mpx` stays light; `register` adds a vendor's ops at run time, after the built-in ones.
"""

from __future__ import annotations

from ..errors import OpError, unknown_name_message
from .spec import OpSpec

# family of an op added with register() rather than defined in mpx/ops/definitions/
REGISTERED = "registered"

_OPS: dict[str, OpSpec] | None = None
_FAMILIES: dict[str, str] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add an op at run time (a vendor's own op); a second op of the same name is an error."""
    if not isinstance(spec, OpSpec):
        raise OpError(f"register takes an OpSpec, not {type(spec).__name__}")
    _add(_table(), spec, REGISTERED)
    return spec


def get_op(name: str | OpSpec) -> OpSpec:
    """The op called `name`."""
    if isinstance(name, OpSpec):
        return name
    ops = _table()
    if name not in ops:
        raise OpError(unknown_name_message("op", name, ops))
    return ops[name]


def all_ops() -> tuple[OpSpec, ...]:
    """Every op: the built-in ones in definition order, then those registered at run time."""
    return tuple(_table().values())


def op_family(name: str | OpSpec) -> str:
    """The definitions module an op lives in ("gemm", "softmax", ...), or REGISTERED for a run-time op."""
    return _FAMILIES[get_op(name).name]


def _table() -> dict[str, OpSpec]:
    """The name -> op table, built from the built-in definitions on first use."""
    global _OPS
    if _OPS is None:
        from .definitions import SPECS_BY_FAMILY

        ops: dict[str, OpSpec] = {}
        for family, specs in SPECS_BY_FAMILY.items():
            for spec in specs:
                _add(ops, spec, family)
        _OPS = ops
    return _OPS


def _add(ops: dict[str, OpSpec], spec: OpSpec, family: str) -> None:
    """Put `spec` in `ops`, refusing a name that is taken."""
    if spec.name in ops:
        raise OpError(
            f"op {spec.name!r} is registered twice (by {_FAMILIES[spec.name]} and {family}); "
            "give the new op a name of its own"
        )
    ops[spec.name] = spec
    _FAMILIES[spec.name] = family
