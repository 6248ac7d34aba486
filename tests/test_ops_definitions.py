"""The op registry: every op of the issue, its autocast class, formats, inputs and float64 reference."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mpx.formats import BF16, FORMATS, FP8_E4M3, FP8_E5M2, FP16, FP32
from mpx.ops import all_ops, get_op, op_family
from mpx.ops import definitions as definitions_package
from mpx.ops.definitions import BUILTIN_SPECS, FAMILIES, SPECS_BY_FAMILY
from mpx.ops.definitions.precision import ADAM, SGD
from mpx.policy import gemm_output_format

PRECISION = {"cast", "scale", "unscale", "nonfinite_check", "sgd_master_update", "adam_master_update", "cast_back"}
LOSSES = {"mse_loss", "cross_entropy"}
MODEL = {
    "matmul",
    "linear",
    "conv2d",
    "add",
    "mul",
    "relu",
    "gelu",
    "silu",
    "softmax",
    "log_softmax",
    "layer_norm",
    "rms_norm",
    "batch_norm",
    "embedding",
    "scaled_dot_product_attention",
    "reduce_sum",
    "reduce_mean",
    "reduce_max",
    "exp",
    "sqrt",
    "where",
}
LOWP = {"matmul", "linear", "conv2d", "scaled_dot_product_attention"}
FP32_CLASS = {"exp", "softmax", "log_softmax", "layer_norm", "rms_norm", "reduce_sum", "reduce_mean"} | LOSSES
REDUCTIONS = (
    LOWP | LOSSES | {"softmax", "log_softmax", "layer_norm", "rms_norm", "reduce_sum", "reduce_mean", "reduce_max"}
)


def test_registry_holds_every_op_of_the_issue_by_kind() -> None:
    kinds = {op.name: op.kind for op in all_ops()}
    assert kinds == {
        **dict.fromkeys(PRECISION, "precision"),
        **dict.fromkeys(LOSSES, "loss"),
        **dict.fromkeys(MODEL, "model"),
    }


def test_autocast_classes_follow_torch_autocast() -> None:
    for op in all_ops():
        want = "lowp" if op.name in LOWP else "fp32" if op.name in FP32_CLASS else "promote"
        assert op.autocast == want, op.name


def test_fp8_is_only_for_gemms_and_precision_ops_and_fp8_gemms_write_bf16() -> None:
    for op in all_ops():
        assert op.supports_format(FP8_E4M3) == (op.name in LOWP | PRECISION), op.name
    assert get_op("matmul").output_formats(FP8_E5M2) == (BF16,)
    assert get_op("cast").output_formats(FP8_E4M3) == (FP8_E4M3,)


def test_gemm_outputs_follow_the_policy_rule_unless_an_op_names_its_own_fp8_output() -> None:
    matmul = get_op("matmul")
    for fmt in FORMATS:
        assert matmul.output_format(fmt) == gemm_output_format(fmt), fmt.name
    assert dataclasses.replace(matmul, fp8_output=FP16).output_formats(FP8_E4M3) == (FP16,)
    assert dataclasses.replace(matmul, fp8_output=FP16).output_formats(BF16) == (BF16,)


def test_losses_flags_unscaled_grads_and_optimizer_state_are_fp32() -> None:
    for name in ("mse_loss", "cross_entropy", "nonfinite_check", "unscale"):
        assert get_op(name).output_formats(BF16) == (FP32,), name
    assert get_op("adam_master_update").output_formats(FP16) == (FP32, FP32, FP32)
    assert get_op("sgd_master_update").output_formats(FP16) == (FP32, FP32)


@pytest.mark.parametrize("op", all_ops(), ids=lambda op: op.name)
def test_generated_inputs_are_representable_in_their_storage_format(op) -> None:
    for fmt in filter(op.supports_format, FORMATS):
        for input_class in op.input_classes:
            if not op.defines(fmt, "forward", input_class):
                continue
            inputs = op.make_inputs(fmt, input_class, torch.Generator().manual_seed(1))
            for arg, value, stored in zip(op.args, inputs, op.to_storage(fmt, inputs), strict=True):
                if arg.role in ("index", "mask"):
                    assert value.dtype == {"index": torch.int64, "mask": torch.bool}[arg.role]
                    continue
                assert value.dtype == torch.float64
                torch.testing.assert_close(stored.double(), value, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", sorted(REDUCTIONS - {"linear", "conv2d"} | {"embedding"}))
def test_long_reduction_inputs_reduce_over_at_least_4096_terms(name: str) -> None:
    op = get_op(name)
    inputs = op.make_inputs(FP32, "long-reduction", torch.Generator().manual_seed(0))
    assert max(max(t.shape) for t in inputs) >= 4096


@pytest.mark.parametrize("name", ["linear", "conv2d"])
def test_long_gemm_inputs_reduce_over_at_least_4096_terms(name: str) -> None:
    weight = get_op(name).make_inputs(FP32, "long-reduction", torch.Generator().manual_seed(0))[1]
    assert weight[0].numel() >= 4096


@pytest.mark.parametrize("fmt", [FP16, BF16, FP32])
def test_special_inputs_hold_subnormals_infinities_and_nan(fmt) -> None:
    (x,) = get_op("relu").make_inputs(fmt, "special", torch.Generator().manual_seed(0))
    assert x.isnan().any() and (x == float("inf")).any() and (x == float("-inf")).any()
    assert ((x.abs() < fmt.min_normal) & (x != 0)).any()
    assert (x.abs() == fmt.max).any()


def test_nonfinite_check_flags_inf_or_nan_only() -> None:
    op = get_op("nonfinite_check")
    finite = torch.tensor([65504.0, -65504.0, 2.0**-24], dtype=torch.float64)
    assert op.reference(finite) == (torch.tensor(0.0, dtype=torch.float64),)
    for bad in (float("inf"), float("nan")):
        assert op.reference(torch.cat([finite, torch.tensor([bad], dtype=torch.float64)]))[0].item() == 1.0


def test_sgd_reference_matches_torch_sgd_and_skips_on_found_inf() -> None:
    op = get_op("sgd_master_update")
    master, grad, buffer, _ = op.make_inputs(FP32, "normal", torch.Generator().manual_seed(0))
    param = torch.nn.Parameter(master.clone())
    optimizer = torch.optim.SGD([param], lr=SGD["lr"], momentum=SGD["momentum"], weight_decay=SGD["weight_decay"])
    optimizer.state[param]["momentum_buffer"] = buffer.clone()
    param.grad = grad.clone()
    optimizer.step()
    new_master, new_buffer = op.reference(master, grad, buffer, torch.tensor(0.0, dtype=torch.float64), **op.attrs)
    torch.testing.assert_close(new_master, param.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(new_buffer, optimizer.state[param]["momentum_buffer"], rtol=1e-14, atol=0)
    skipped = op.reference(master, grad * float("nan"), buffer, torch.tensor(1.0, dtype=torch.float64), **op.attrs)
    assert torch.equal(skipped[0], master) and torch.equal(skipped[1], buffer)


def test_adam_reference_matches_torch_adamw_at_the_same_step() -> None:
    op = get_op("adam_master_update")
    master, grad, exp_avg, exp_avg_sq, _ = op.make_inputs(FP32, "normal", torch.Generator().manual_seed(0))
    param = torch.nn.Parameter(master.clone())
    optimizer = torch.optim.AdamW(
        [param], lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"], weight_decay=ADAM["weight_decay"]
    )
    optimizer.state[param].update(
        step=torch.tensor(float(ADAM["step"] - 1)), exp_avg=exp_avg.clone(), exp_avg_sq=exp_avg_sq.clone()
    )
    param.grad = grad.clone()
    optimizer.step()
    outputs = op.reference(master, grad, exp_avg, exp_avg_sq, torch.tensor(0.0, dtype=torch.float64), **op.attrs)
    torch.testing.assert_close(outputs[0], param.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(outputs[1], optimizer.state[param]["exp_avg"], rtol=1e-14, atol=0)
    torch.testing.assert_close(outputs[2], optimizer.state[param]["exp_avg_sq"], rtol=1e-14, atol=0)


def test_cast_and_cast_back_round_fp32_to_the_format() -> None:
    for name in ("cast", "cast_back"):
        op = get_op(name)
        assert op.args[0].role == "fp32" and op.reference(torch.tensor([1.5]))[0].item() == 1.5


def test_families_are_the_definition_modules() -> None:
    folder = Path(definitions_package.__file__).parent
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    assert set(FAMILIES) == modules and len(FAMILIES) == len(modules)


def test_each_definition_module_exports_its_specs_and_builtin_specs_concatenates_them_in_family_order() -> None:
    for family in FAMILIES:
        module = importlib.import_module(f"mpx.ops.definitions.{family}")
        assert module.SPECS == SPECS_BY_FAMILY[family] and module.SPECS, family
    assert BUILTIN_SPECS == tuple(spec for family in FAMILIES for spec in SPECS_BY_FAMILY[family])


def test_the_registry_lists_the_builtin_specs_first_in_their_order() -> None:
    assert all(a is b for a, b in zip(all_ops(), BUILTIN_SPECS, strict=False))
    assert len(all_ops()) >= len(BUILTIN_SPECS)


def test_op_family_names_the_module_each_op_is_defined_in() -> None:
    for family, specs in SPECS_BY_FAMILY.items():
        for spec in specs:
            assert op_family(spec.name) == family
            assert op_family(spec) == family


def test_importing_the_definition_modules_registers_nothing() -> None:
    """A fresh interpreter imports every definitions module with register() replaced by a recorder."""
    script = """
import importlib
import mpx.ops.registry as registry
calls = []
registry.register = calls.append
for family in ("elementwise", "reduction", "gemm", "attention", "embedding", "norm", "softmax", "loss", "precision"):
    importlib.import_module("mpx.ops.definitions." + family)
assert calls == [], calls
assert registry._OPS is None, "importing the definitions built the registry"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_import_mpx_loads_no_op_definitions() -> None:
    script = "import sys, mpx; assert not [m for m in sys.modules if m.startswith('mpx.ops.definitions')]"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
