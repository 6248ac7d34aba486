"""The cuda backend's op execution, run on the CPU device: same code path as on the GPU."""

import pytest
import torch

from mpx.backends.cuda.execution import run_on_device, strict_numerics
from mpx.backends.cuda.fp8_dispatch import fp8_matmul
from mpx.formats import format as lookup_format
from mpx.ops import get_op
from mpx.ops.reference import expected, prepare
from mpx.ops.tolerance import compare


def _check(op_name, fmt_name, pass_):
    op, fmt = get_op(op_name), lookup_format(fmt_name)
    prepared = prepare(op, fmt, "normal", pass_, seed=3)
    got = run_on_device(op, fmt, prepared.storage_inputs, pass_, prepared.storage_grad_outputs, "cpu")
    want = expected(op, fmt, prepared, pass_)
    return got, compare(op, fmt, got, want, prepared, pass_)


@pytest.mark.parametrize("fmt", ["fp32", "bf16"])
@pytest.mark.parametrize("pass_", ["forward", "backward"])
def test_matmul_matches_the_reference(fmt, pass_):
    _, result = _check("matmul", fmt, pass_)
    assert result.passed, result.detail


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "bf16"])
def test_add_is_bit_exact(fmt):
    got, result = _check("add", fmt, "forward")
    assert result.passed and result.max_error_ulp == 0, result.detail
    assert got[0].dtype == lookup_format(fmt).torch_dtype


def test_fp8_matmul_forward_runs_through_scaled_mm_and_writes_bf16():
    got, result = _check("matmul", "fp8_e4m3", "forward")
    assert got[0].dtype == torch.bfloat16
    assert result.passed, result.detail


def test_fp8_matmul_pads_odd_shapes_exactly():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(5, 7, generator=generator).to(torch.float8_e4m3fn)
    b = torch.randn(7, 3, generator=generator).to(torch.float8_e4m3fn)
    assert torch.allclose(fp8_matmul(a, b), a.float() @ b.float(), rtol=1e-6, atol=1e-6)


def test_fp8_matmul_broadcasts_batches():
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(2, 4, 16, generator=generator).to(torch.float8_e4m3fn)
    b = torch.randn(16, 16, generator=generator).to(torch.float8_e4m3fn)
    c = torch.randn(2, 16, 16, generator=generator).to(torch.float8_e4m3fn)
    assert torch.allclose(fp8_matmul(a, b), a.float() @ b.float(), rtol=1e-6, atol=1e-6)
    assert torch.allclose(fp8_matmul(a, c), a.float() @ c.float(), rtol=1e-6, atol=1e-6)


def test_strict_numerics_turns_tf32_off_and_restores_the_flags():
    matmul = torch.backends.cuda.matmul
    before = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32, matmul.allow_fp16_reduced_precision_reduction)
    with strict_numerics():
        assert not matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert not matmul.allow_fp16_reduced_precision_reduction
    after = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32, matmul.allow_fp16_reduced_precision_reduction)
    assert after == before
