"""Ops: what an op is (spec), the registry, the right answer (reference) and how close is close enough (tolerance).

The built-in op definitions (mpx/ops/definitions/) load on the first registry lookup.
"""

from .error_model import Magnitude
from .registry import all_ops, get_op, op_family, register
from .spec import EXACT, INPUT_CLASSES, Arg, InputClass, OpSpec, Pass, Tolerance

__all__ = [
    "EXACT",
    "INPUT_CLASSES",
    "Arg",
    "InputClass",
    "Magnitude",
    "OpSpec",
    "Pass",
    "Tolerance",
    "all_ops",
    "get_op",
    "op_family",
    "register",
]
