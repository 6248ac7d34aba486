"""`mpx train --backend onnxrt[:EP]`: the MLP trains on the CPU EP (forward, backward and the protocol as
sessions), ends within 2 % of the cpu backend's fp32 run, and the placement is printed and written to JSON."""

from __future__ import annotations

import json

import pytest

from mpx.cli import main
from mpx.training.synthetic import train

pytest.importorskip("onnxscript", reason="needs the onnxrt extra (pip install mpx-precision[onnxrt])")

STEPS = 200


@pytest.fixture(scope="module")
def cpu_fp32_loss():
    return train("cpu", "fp32", steps=STEPS, seed=0).final_loss


def _kinds(placement: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for graph in placement:
        kinds.setdefault(graph["kind"], []).append(graph)
    return kinds


@pytest.mark.parametrize("precision", ["fp32", "fp16-mixed", "bf16-mixed"])
def test_onnxrt_training_ends_within_two_percent_of_the_cpu_backends_fp32_run(precision, cpu_fp32_loss):
    summary = train("onnxrt", precision, steps=STEPS, seed=0)
    assert abs(summary.final_loss - cpu_fp32_loss) <= 0.02 * cpu_fp32_loss
    kinds = _kinds(summary.placement)
    assert "eager" not in kinds, kinds.get("eager")
    assert len(kinds["forward"]) == len(kinds["backward"]) == 1  # the model ran as sessions: one capture
    # one graph checks (at a loss scale of 1, fp32 and bf16-mixed: only checks) and updates
    fused = "unscale_check_adamw" if precision == "fp16-mixed" else "check_adamw"
    assert {g["protocol"] for g in kinds["protocol"]} == {fused}
    for graph in summary.placement:
        assert graph["provider"] == "CPUExecutionProvider" and graph["share_on_provider"] == 1.0


def test_cli_prints_the_placement_and_writes_it_into_the_json(tmp_path, capsys):
    path = tmp_path / "run.json"
    argv = ["train", "--backend", "onnxrt:CPUExecutionProvider", "--precision", "fp16-mixed", "--steps", "3"]
    assert main([*argv, "--hidden", "16", "--json", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    result = json.loads(path.read_text())
    assert result["backend"] == "onnxrt:CPUExecutionProvider" and result["first_step_ms"] > 0
    kinds = _kinds(result["placement"])
    assert set(kinds) == {"forward", "backward", "protocol"}  # no "eager": every model call ran on the EP
    forward = kinds["forward"][0]
    assert set(forward["gemm_dtypes_in_graph"]["Gemm"]) == {"float16"}  # fp16-mixed: exported fp16 GEMMs
    assert "placement on CPUExecutionProvider:" in out
    for graph in result["placement"]:
        assert f"  {graph['graph']}: {graph['nodes']} nodes, 100% on EP" in out
    assert "(exported float16)" in out  # the CPU EP has no fp16 Gemm: it ran in float32, and says so


def test_cpu_backend_prints_no_placement(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert main(["train", "--steps", "2", "--json", str(path), "--no-progress"]) == 0
    assert json.loads(path.read_text())["placement"] == []
    assert "placement" not in capsys.readouterr().out


def test_an_unknown_execution_provider_is_one_line_and_exit_2(capsys):
    assert main(["train", "--backend", "onnxrt:AcmeExecutionProvider", "--steps", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "AcmeExecutionProvider" in err and len(err.splitlines()) == 1
