"""Precision policies: presets, jmp-style strings, and what a policy says about ops, scaling and master weights."""

from __future__ import annotations

import pytest

import mpx
from mpx.formats import BF16, FP8_E4M3, FP8_E5M2, FP16, FP32
from mpx.policy import PRESETS, Policy

PRESET_FORMATS = {
    "fp32": (FP32, FP32, FP32, None),
    "fp16-mixed": (FP32, FP16, FP32, None),
    "bf16-mixed": (FP32, BF16, FP32, None),
    "fp16-pure": (FP16, FP16, FP16, None),
    "bf16-pure": (BF16, BF16, BF16, None),
    "fp8-hybrid": (FP32, FP8_E4M3, FP32, FP8_E5M2),
}


@pytest.mark.parametrize("name", list(PRESET_FORMATS))
def test_presets_have_their_formats_and_name(name: str) -> None:
    p = mpx.policy(name)
    assert (p.params, p.compute, p.output, p.grads) == PRESET_FORMATS[name]
    assert p.name == name == str(p)


def test_the_presets_are_exactly_the_documented_six() -> None:
    assert set(PRESETS) == set(PRESET_FORMATS)


@pytest.mark.parametrize("spelling", ["BF16-Mixed", " bf16-mixed ", "bf16_mixed"])
def test_preset_names_ignore_case_spaces_and_underscores(spelling: str) -> None:
    assert mpx.policy(spelling) is PRESETS["bf16-mixed"]


@pytest.mark.parametrize(
    "spec",
    [
        "params=float32,compute=float16,output=float32",
        "p=f32,c=f16,o=f32",
        "param=fp32, compute=half, output=float",
        "compute=fp16",
    ],
)
def test_jmp_strings_with_keys_and_aliases(spec: str) -> None:
    p = mpx.policy(spec)
    assert (p.params, p.compute, p.output) == (FP32, FP16, FP32)


def test_a_jmp_string_that_spells_out_a_preset_is_the_preset() -> None:
    assert mpx.policy("params=fp32,compute=bfloat16,output=fp32") is PRESETS["bf16-mixed"]
    assert mpx.policy("p=fp32,c=e4m3fn,o=fp32,g=e5m2").name == "fp8-hybrid"


def test_compute_and_output_default_to_params() -> None:
    p = mpx.policy("params=bf16")
    assert (p.params, p.compute, p.output) == (BF16, BF16, BF16)


def test_a_jmp_string_outside_the_presets_is_named_by_its_formats() -> None:
    p = mpx.policy("params=bf16,compute=bf16,output=fp32")
    assert p.name is None
    assert str(p) == "params=bf16,compute=bf16,output=fp32"
    assert mpx.policy(str(p)) == p


def test_a_policy_passes_through() -> None:
    p = Policy(FP32, BF16, BF16)
    assert mpx.policy(p) is p


def test_unknown_preset_lists_the_presets_and_suggests_the_closest() -> None:
    with pytest.raises(mpx.PolicyError, match=r"did you mean 'bf16-mixed'\?.*fp16-mixed.*fp8-hybrid.*params=fp32"):
        mpx.policy("bf16-mixd")


@pytest.mark.parametrize(
    "spec,problem",
    [
        ("params=fp32,kompute=bf16", "bad policy entry 'kompute=bf16'"),
        ("params=fp32,compute", "bad policy entry 'compute'"),
        ("params=fp32,compute=fp12", "unknown format 'fp12' for compute"),
        ("params=fp32,p=bf16", "params is given twice"),
    ],
)
def test_bad_jmp_strings_name_the_problem_and_list_keys_and_formats(spec: str, problem: str) -> None:
    with pytest.raises(mpx.PolicyError) as raised:
        mpx.policy(spec)
    message = str(raised.value)
    assert problem in message
    assert "keys: params (param, p), compute (c), output (o), grads (grad, g)" in message
    assert "formats: fp32, fp16, bf16, fp8_e4m3, fp8_e5m2" in message


def test_a_policy_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        mpx.policy(3)


@pytest.mark.parametrize(
    "name,scale,master",
    [
        ("fp32", "none", False),
        ("fp16-mixed", "dynamic", False),
        ("bf16-mixed", "none", False),
        ("fp16-pure", "dynamic", True),
        ("bf16-pure", "none", True),
        ("fp8-hybrid", "dynamic", False),
    ],
)
def test_loss_scaling_and_master_weights_follow_the_formats(name: str, scale: str, master: bool) -> None:
    p = mpx.policy(name)
    assert (p.default_loss_scale, p.needs_master_weights) == (scale, master)


def test_op_format_follows_the_autocast_class() -> None:
    p = mpx.policy("fp8-hybrid")
    assert (p.op_format("lowp"), p.op_format("lowp", backward=True)) == (FP8_E4M3, FP8_E5M2)
    assert p.op_format("fp32") == FP32
    assert p.op_format("promote") == BF16  # fp8 is a GEMM-only format: other ops run in bf16
    assert mpx.policy("fp16-mixed").op_format("promote") == FP16


def test_mixed_means_anything_below_fp32() -> None:
    assert [mpx.policy(n).is_mixed for n in PRESET_FORMATS] == [False, True, True, True, True, True]
