"""The cpu emulation backend: options, storage formats, fp32 accumulation, saturation, flushing, autocast."""

from __future__ import annotations

import pytest
import torch

import mpx
from mpx.backends.cpu.backend import CpuBackend
from mpx.errors import MpxError
from mpx.formats import BF16, FP8_E4M3, FP16, FP32
from mpx.ops import get_op
from mpx.ops.reference import expected, prepare


def run(backend: CpuBackend, name: str, fmt, *values: torch.Tensor, pass_: str = "forward", grads=None):
    op = get_op(name)
    return backend.run(op, fmt, op.to_storage(fmt, values), pass_, grads)


def f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_get_backend_cpu_builds_a_cpu_backend_with_the_options() -> None:
    backend = mpx.get_backend("cpu", overflow="saturate", subnormals="flush")
    assert isinstance(backend, CpuBackend)
    assert backend.describe() == {
        "name": "cpu",
        "device": "cpu",
        "overflow": "saturate",
        "subnormals": "flush",
        "native_autocast": False,
    }


@pytest.mark.parametrize("options", [{"overflow": "clamp"}, {"subnormals": "daz"}, {"native": "yes"}])
def test_bad_options_raise_an_mpx_error_naming_the_valid_values(options) -> None:
    with pytest.raises(MpxError, match="must be"):
        CpuBackend(**options)


def test_outputs_come_in_each_output_format() -> None:
    backend = CpuBackend()
    op = get_op("adam_master_update")
    prepared = prepare(op, FP8_E4M3, "normal", "forward", 0)
    outputs = backend.run(op, FP8_E4M3, prepared.storage_inputs)
    assert [t.dtype for t in outputs] == [torch.float32] * 3
    (product,) = run(backend, "matmul", FP8_E4M3, f64(1.0, 2.0).reshape(1, 2), f64(3.0, 4.0).reshape(2, 1))
    assert product.dtype == torch.bfloat16 and product.item() == 11.0


def test_backward_returns_gradients_of_the_differentiable_args_in_their_formats() -> None:
    backend = CpuBackend()
    op = get_op("linear")
    prepared = prepare(op, FP16, "normal", "backward", 0)
    grads = backend.run(op, FP16, prepared.storage_inputs, "backward", prepared.storage_grad_outputs)
    assert [g.shape for g in grads] == [t.shape for t in prepared.inputs]
    assert all(g.dtype == torch.float16 for g in grads)


def test_inputs_in_the_wrong_storage_format_are_rejected() -> None:
    with pytest.raises(MpxError, match="to_storage"):
        CpuBackend().run(get_op("relu"), FP16, (torch.ones(3),))


def test_support_is_native_where_the_op_is_defined_and_unsupported_elsewhere() -> None:
    backend = CpuBackend()
    assert backend.support(get_op("matmul"), FP8_E4M3, "backward").status == "native"
    assert backend.support(get_op("softmax"), FP8_E4M3).status == "unsupported"
    assert backend.support(get_op("scale"), FP16, "backward").status == "unsupported"
    with pytest.raises(MpxError):
        backend.run(get_op("softmax"), FP8_E4M3, (torch.zeros(2, dtype=torch.float8_e4m3fn),))


def test_overflow_gives_inf_by_default_and_max_when_saturating() -> None:
    a = f64(65504.0, -65504.0)
    assert run(CpuBackend(), "add", FP16, a, a)[0].tolist() == [float("inf"), float("-inf")]
    assert run(CpuBackend(overflow="saturate"), "add", FP16, a, a)[0].tolist() == [65504.0, -65504.0]


def test_fp8_e4m3_overflow_is_nan_without_saturation() -> None:
    (out,) = run(CpuBackend(), "cast", FP8_E4M3, f64(480.0, 440.0))
    assert out.float()[0].isnan() and out.float()[1].item() == 448.0


def test_flushing_reads_subnormal_inputs_as_zero_and_flushes_subnormal_results() -> None:
    tiny = f64(2.0**-24, 2.0**-14)  # fp16's smallest subnormal and smallest normal
    assert run(CpuBackend(subnormals="flush"), "relu", FP16, tiny)[0].tolist() == [0.0, 2.0**-14]
    halves = run(CpuBackend(subnormals="flush"), "mul", FP16, f64(2.0**-14, 1.0), f64(0.5, 2.0**-14))[0]
    assert halves.tolist() == [0.0, 2.0**-14]
    assert run(CpuBackend(), "relu", FP16, tiny)[0].tolist() == [2.0**-24, 2.0**-14]


def test_elementwise_ops_are_bit_exact_against_the_reference() -> None:
    backend = CpuBackend()
    for name in ("gelu", "silu", "exp", "sqrt"):
        op = get_op(name)
        prepared = prepare(op, BF16, "special", "forward", 3)
        (got,) = backend.run(op, BF16, prepared.storage_inputs)
        (want,) = expected(op, BF16, prepared, "forward")
        torch.testing.assert_close(got.double(), want, rtol=0, atol=0, equal_nan=True)


def test_gemms_accumulate_in_fp32_not_float64() -> None:
    op = get_op("matmul")
    prepared = prepare(op, FP32, "long-reduction", "forward", 0)
    (got,) = CpuBackend().run(op, FP32, prepared.storage_inputs)
    a, b = prepared.storage_inputs
    assert torch.equal(got, a @ b)  # the fp32 product, not float64 rounded once
    assert not torch.equal(got.double(), expected(op, FP32, prepared, "forward")[0])


def test_bf16_gemm_rounds_the_fp32_accumulator_once_to_bf16() -> None:
    op = get_op("matmul")
    prepared = prepare(op, BF16, "odd-shape", "forward", 0)
    (got,) = CpuBackend().run(op, BF16, prepared.storage_inputs)
    a, b = (t.float() for t in prepared.storage_inputs)
    assert torch.equal(got, (a @ b).to(torch.bfloat16))


def test_native_autocast_uses_torch_cpu_autocast_kernels() -> None:
    x = torch.randn(4, 4)
    with CpuBackend(native=True).autocast("bf16-mixed"):
        assert (x @ x).dtype == torch.bfloat16
    with CpuBackend().autocast("bf16-mixed", native=True):
        assert (x @ x).dtype == torch.bfloat16


def test_emulated_autocast_keeps_fp32_tensors_but_rounds_gemms_to_the_compute_format() -> None:
    x = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    with CpuBackend().autocast("fp16-mixed"):
        y = x @ x
    assert y.dtype == torch.float32
    assert torch.equal(FP16.round(y), y) and not torch.equal(y, x @ x)


def test_native_autocast_has_no_fp8() -> None:
    with pytest.raises(MpxError, match="fp8"):
        with CpuBackend(native=True).autocast("fp8-hybrid"):
            pass


def test_fp32_policy_changes_nothing() -> None:
    x = torch.randn(3, 3) / 3
    outside = x @ x
    with CpuBackend().autocast("fp32"):
        inside = x @ x
    assert torch.equal(inside, outside) and inside.dtype == FP32.torch_dtype
