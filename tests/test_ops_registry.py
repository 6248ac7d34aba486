"""The op registry: built from the definitions, extended at run time by register(), old module paths kept."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest
import torch

from mpx.errors import OpError
from mpx.ops import Arg, OpSpec, all_ops, get_op, op_family, register, registry
from mpx.ops.definitions import BUILTIN_SPECS


def _identity(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (x,)


def _inputs(fmt, input_class, generator) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(3, dtype=torch.float64),)


def vendor_op(name: str = "vendor_identity") -> OpSpec:
    return OpSpec(name, "model", (Arg("x"),), _identity, _inputs, doc="a vendor's own op")


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the registry for the test: ops registered in it vanish afterwards."""
    all_ops()
    monkeypatch.setattr(registry, "_OPS", dict(registry._OPS))
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))


def test_a_registered_op_comes_after_the_builtin_ones_with_its_own_family(scratch_registry) -> None:
    op = register(vendor_op())
    assert get_op("vendor_identity") is op and all_ops()[-1] is op
    assert all_ops()[: len(BUILTIN_SPECS)] == BUILTIN_SPECS
    assert op_family(op) == registry.REGISTERED


def test_registering_a_taken_name_names_both_providers(scratch_registry) -> None:
    with pytest.raises(OpError, match=r"'matmul' is registered twice \(by gemm and registered\)"):
        register(vendor_op("matmul"))


def test_register_takes_only_an_op_spec(scratch_registry) -> None:
    with pytest.raises(OpError, match="register takes an OpSpec, not str"):
        register("matmul")


def test_an_unknown_op_suggests_the_closest_name() -> None:
    with pytest.raises(OpError, match="matmul"):
        get_op("matmull")
    with pytest.raises(OpError):
        op_family("matmull")


OLD_PATHS = [
    ("mpx.ops.check", "compare", "mpx.ops.tolerance"),
    ("mpx.ops.check", "prepare", "mpx.ops.reference"),
    ("mpx.ops.magnitude", "Magnitude", "mpx.ops.error_model"),
    ("mpx.ops.attention_ops", "SPECS", "mpx.ops.definitions.attention"),
    ("mpx.ops.elementwise_ops", "ELEMENTWISE_OPS", "mpx.ops.definitions.elementwise"),
    ("mpx.ops.embedding_ops", "SPECS", "mpx.ops.definitions.embedding"),
    ("mpx.ops.gemm_ops", "operand", "mpx.ops.definitions.gemm"),
    ("mpx.ops.loss_ops", "SPECS", "mpx.ops.definitions.loss"),
    ("mpx.ops.norm_ops", "EPS", "mpx.ops.definitions.norm"),
    ("mpx.ops.precision_ops", "ADAM", "mpx.ops.definitions.precision"),
    ("mpx.ops.reduction_ops", "SPECS", "mpx.ops.definitions.reduction"),
    ("mpx.ops.softmax_ops", "shift_error", "mpx.ops.error_model"),
]


@pytest.mark.parametrize(("old", "name", "new"), OLD_PATHS)
def test_old_ops_module_paths_still_import_with_a_deprecation_warning(monkeypatch, old, name, new) -> None:
    monkeypatch.delitem(sys.modules, old, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in caught)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
