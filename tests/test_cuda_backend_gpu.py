"""The cuda backend on a real GPU: every registry op in fp16 / bf16, autocast, describe."""

import pytest
import torch

import mpx
from mpx.ops import all_ops
from mpx.ops.reference import expected, prepare
from mpx.ops.tolerance import compare

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("fmt_name", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("pass_", ["forward", "backward"])
def test_every_supported_op_matches_the_reference(fmt_name, pass_):
    backend, fmt = mpx.get_backend("cuda"), mpx.format(fmt_name)
    failures = []
    for op in all_ops():
        if not backend.support(op, fmt, pass_).runs:
            continue
        prepared = prepare(op, fmt, "normal", pass_, seed=0)
        got = backend.run(op, fmt, prepared.storage_inputs, pass_, prepared.storage_grad_outputs)
        result = compare(op, fmt, got, expected(op, fmt, prepared, pass_), prepared, pass_)
        if not result.passed:
            failures.append(f"{op.name}: {result.detail}")
    assert not failures, failures


def test_autocast_runs_matmuls_in_the_policy_format():
    backend = mpx.get_backend("cuda")
    layer = torch.nn.Linear(8, 8).cuda()
    with backend.autocast("fp16-mixed"):
        assert layer(torch.randn(2, 8, device="cuda")).dtype == torch.float16
    with backend.autocast("fp32"):
        assert layer(torch.randn(2, 8, device="cuda")).dtype == torch.float32


def test_describe_names_the_gpu():
    facts = mpx.get_backend("cuda").describe()
    assert facts["gpu"] == torch.cuda.get_device_name(0)
    assert facts["compute_capability"].startswith("sm_")
