"""The four scenario manifests: valid TOML naming only registered ops, real passes and known format roles."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from mpx.ops import get_op

SCENARIOS = ("training-classification", "training-generative", "inference-classification", "inference-generative")
FOLDER = Path(__file__).resolve().parents[1] / "conformance" / "scenarios"
ROLES = {"compute", "grads", "fp32", "params"}
PRECISION_STEP = {"scale", "unscale", "nonfinite_check", "cast_back"}


def load(name: str) -> dict:
    with open(FOLDER / f"{name}.toml", "rb") as handle:
        return tomllib.load(handle)


def requirements(name: str) -> set[tuple[str, str]]:
    return {(entry["op"], entry["pass"]) for entry in load(name)["requires"]}


@pytest.mark.parametrize("name", SCENARIOS)
def test_manifest_names_itself_and_rates_the_four_compute_formats(name: str) -> None:
    manifest = load(name)
    assert manifest["scenario"] == name
    assert manifest["description"]
    assert manifest["formats"] == ["fp32", "fp16", "bf16", "fp8_e4m3"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_entry_names_a_registered_op_a_pass_it_has_a_role_and_a_reason(name: str) -> None:
    for entry in load(name)["requires"]:
        assert set(entry) == {"op", "pass", "format", "why"}, entry
        op = get_op(entry["op"])
        assert entry["pass"] in ("forward", "backward")
        assert entry["pass"] == "forward" or op.has_backward, entry
        assert entry["format"] in ROLES, entry
        assert entry["why"].strip(), entry


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_entry_is_listed_twice(name: str) -> None:
    entries = [(e["op"], e["pass"]) for e in load(name)["requires"]]
    assert len(entries) == len(set(entries))


@pytest.mark.parametrize("name", ["training-classification", "training-generative"])
def test_training_needs_backward_passes_and_the_loss_scaling_step(name: str) -> None:
    needed = requirements(name)
    assert {op for op, pass_ in needed if pass_ == "backward"} >= {"linear", "cross_entropy"}
    assert PRECISION_STEP <= {op for op, _ in needed}
    assert {"sgd_master_update", "adam_master_update"} & {op for op, _ in needed}


@pytest.mark.parametrize("name", ["inference-classification", "inference-generative"])
def test_inference_needs_no_backward_pass_and_no_optimizer(name: str) -> None:
    needed = requirements(name)
    assert all(pass_ == "forward" for _, pass_ in needed)
    assert not {op for op, _ in needed} & (PRECISION_STEP | {"sgd_master_update", "adam_master_update"})


@pytest.mark.parametrize("name", ["training-classification", "inference-classification"])
def test_classification_needs_convolutions_batch_norm_and_relu(name: str) -> None:
    assert {"conv2d", "batch_norm", "relu", "linear"} <= {op for op, _ in requirements(name)}


@pytest.mark.parametrize("name", ["training-generative", "inference-generative"])
def test_generative_needs_attention_norms_activations_and_embeddings(name: str) -> None:
    ops = {op for op, _ in requirements(name)}
    assert {"matmul", "scaled_dot_product_attention", "softmax", "embedding"} <= ops
    assert ops & {"layer_norm", "rms_norm"} and ops & {"gelu", "silu"}


def test_training_classification_uses_cross_entropy_and_generative_training_too() -> None:
    assert ("cross_entropy", "forward") in requirements("training-classification")
    assert ("cross_entropy", "forward") in requirements("training-generative")
