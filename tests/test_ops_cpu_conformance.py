"""Every op, in every format it takes, both passes and every input class, passes its own check on the cpu backend."""

from __future__ import annotations

import pytest

from mpx.backends.cpu.backend import CpuBackend
from mpx.formats import FORMATS
from mpx.ops import all_ops
from mpx.ops.reference import expected, prepare
from mpx.ops.spec import BASIC_CLASSES
from mpx.ops.tolerance import compare

CASES = [
    pytest.param(op, fmt, pass_, input_class, id=f"{op.name}-{fmt.name}-{pass_}-{input_class}")
    for op in all_ops()
    for fmt in FORMATS
    if op.supports_format(fmt)
    for pass_ in (("forward", "backward") if op.has_backward else ("forward",))
    for input_class in op.input_classes
    # the special-value, long accumulation and sequence classes run in the full cpu conformance run
    # (tests/test_conformance_liars.py asserts it all passes); here the classes that vary the rounding settings
    if op.defines(fmt, pass_, input_class) and input_class in (*BASIC_CLASSES, "overflow", "accumulation-128")
]
SETTINGS = [
    pytest.param({}, id="ieee"),
    pytest.param({"overflow": "saturate", "subnormals": "flush"}, id="saturate-flush"),
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize(("op", "fmt", "pass_", "input_class"), CASES)
def test_cpu_backend_meets_the_op_tolerance(op, fmt, pass_, input_class, settings) -> None:
    backend = CpuBackend(**settings)
    prepared = prepare(op, fmt, input_class, pass_, seed=7)
    got = backend.run(op, fmt, prepared.storage_inputs, pass_, prepared.storage_grad_outputs)
    want = expected(op, fmt, prepared, pass_, backend.overflow, backend.subnormals)
    result = compare(op, fmt, got, want, prepared, pass_, subnormals=backend.subnormals)
    assert result.passed, result.detail
