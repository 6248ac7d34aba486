"""The built-in ops as data: one module per family, each exporting `SPECS`; importing them registers nothing.

`FAMILIES` names the modules in the order their ops are listed (backends that keep one module per family,
like onnxrt's graph/, mirror these names); `BUILTIN_SPECS` is every family's SPECS in that order.
mpx.ops.registry builds its table from SPECS_BY_FAMILY (BUILTIN_SPECS, each op with its family) on first use.
"""

from __future__ import annotations

from types import MappingProxyType

from ..spec import OpSpec
from . import attention, elementwise, embedding, gemm, loss, norm, precision, reduction, softmax

# the order all_ops() has always listed the ops in: case lists and reports follow it
SPECS_BY_FAMILY: MappingProxyType[str, tuple[OpSpec, ...]] = MappingProxyType(
    {
        "gemm": gemm.SPECS,
        "softmax": softmax.SPECS,
        "attention": attention.SPECS,
        "elementwise": elementwise.SPECS,
        "embedding": embedding.SPECS,
        "loss": loss.SPECS,
        "norm": norm.SPECS,
        "precision": precision.SPECS,
        "reduction": reduction.SPECS,
    }
)
FAMILIES: tuple[str, ...] = tuple(SPECS_BY_FAMILY)
BUILTIN_SPECS: tuple[OpSpec, ...] = tuple(spec for specs in SPECS_BY_FAMILY.values() for spec in specs)

__all__ = ["BUILTIN_SPECS", "FAMILIES", "SPECS_BY_FAMILY"]
