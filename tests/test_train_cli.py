"""`mpx train`: mixed precision ends where fp32 does; master weights matter for fp16-pure."""

import json

import pytest

from mpx.cli import main
from mpx.training.synthetic import train

STEPS = 200


@pytest.fixture(scope="module")
def fp32_loss():
    return train("cpu", "fp32", steps=STEPS, seed=0).final_loss


@pytest.mark.parametrize("precision", ["bf16-mixed", "fp16-mixed"])
def test_mixed_precision_ends_within_two_percent_of_fp32(precision, fp32_loss):
    summary = train("cpu", precision, steps=STEPS, seed=0)
    assert abs(summary.final_loss - fp32_loss) <= 0.02 * fp32_loss


def test_training_reduces_the_loss(fp32_loss):
    assert fp32_loss < 0.5 * train("cpu", "fp32", steps=1, seed=0).final_loss


def _mean(values):
    return sum(values) / len(values)


def test_fp16_pure_converges_with_masters_and_stagnates_without():
    """Adam steps of 1e-5 are below half an fp16 ulp of most weights: only fp32 masters accumulate them."""
    options = dict(steps=300, lr=1e-5, hidden=64, seed=0)
    with_masters = train("cpu", "fp16-pure", **options)
    without = train("cpu", "fp16-pure", master_weights=False, **options)
    start = _mean(with_masters.loss_curve[:10])
    assert _mean(without.loss_curve[:10]) == pytest.approx(start, rel=1e-3)  # same seed, same batches
    gain_with, gain_without = start - with_masters.final_loss, start - without.final_loss
    assert gain_with > 0.02 * start
    assert gain_without < 0.5 * gain_with


def test_cli_writes_json_summary_with_final_loss(tmp_path, capsys):
    path = tmp_path / "run.json"
    code = main(
        [
            "train",
            "--backend",
            "cpu",
            "--precision",
            "bf16-mixed",
            "--steps",
            "20",
            "--compare-fp32",
            "--json",
            str(path),
            "--no-progress",
        ]
    )
    result = json.loads(path.read_text())
    assert code == 0
    assert {"final_loss", "fp32_final_loss", "steps_skipped", "final_scale", "step_time_ms", "bytes_per_param"} <= set(
        result
    )
    assert result["final_loss"] > 0 and result["bytes_per_param"] == pytest.approx(16.0, abs=0.1)
    assert "final loss" in capsys.readouterr().out


def test_cli_lean_state_reports_12_bytes_per_parameter(tmp_path):
    path = tmp_path / "run.json"
    main(["train", "--steps", "3", "--state-formats", "lean", "--json", str(path), "--no-progress"])
    assert json.loads(path.read_text())["bytes_per_param"] == pytest.approx(12.0, abs=0.1)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--precision", "fp17-mixed"], "unknown policy"),
        (["--backend", "nosuch"], "unknown backend"),
        (["--steps", "0"], "--steps"),
        (["--loss-scale", "-4"], "scale"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["train", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
