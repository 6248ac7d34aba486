"""Ops: specs, the registry and the built-in op definitions (loaded on first lookup)."""

from .magnitude import Magnitude
from .registry import all_ops, get_op, register
from .spec import EXACT, INPUT_CLASSES, Arg, InputClass, OpSpec, Pass, Tolerance

__all__ = [
    "EXACT", "INPUT_CLASSES", "Arg", "InputClass", "Magnitude", "OpSpec", "Pass", "Tolerance", "all_ops", "get_op",
    "register",
]
