"""`mpx train --nproc N --parallel ddp|fsdp`: N local gloo ranks train the built-in MLP like one process does."""

import json

import pytest
import torch

from mpx.cli import main
from mpx.training.synthetic import train

OPTIONS = dict(steps=4, seed=3, batch_size=32, hidden=32)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_local_ranks_train_like_one_process(parallel, tmp_path, capsys):
    path = tmp_path / "run.json"
    argv = ["train", "--nproc", "2", "--parallel", parallel, "--precision", "fp16-mixed", "--no-progress"]
    argv += ["--steps", "4", "--seed", "3", "--batch-size", "32", "--hidden", "32", "--json", str(path)]
    assert main(argv) == 0
    result = json.loads(path.read_text())
    assert result["world_size"] == 2 and result["parallel"] == parallel
    one_process = train("cpu", "fp16-mixed", **OPTIONS)
    # the same global batches: the losses differ only by the order of the gradient sums
    assert result["loss_curve"] == pytest.approx(one_process.loss_curve, rel=1e-3)
    assert result["steps_skipped"] == one_process.steps_skipped
    assert f"2 ({parallel})" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--nproc", "2", "--dist-backend", "nccl"], "nccl needs one CUDA GPU per rank"),
        (["--nproc", "2", "--parallel", "fsdp", "--precision", "fp16-pure"], "use --precision fp16-mixed"),
        (["--nproc", "2", "--batch-size", "5"], "does not split among 2 ranks"),
        (["--nproc", "2", "--no-master-weights"], "trains one process only"),
        (["--nproc", "0"], "--nproc"),
    ],
)
def test_distributed_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    if "nccl" in argv and torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the two GPUs that make nccl valid here")
    assert main(["train", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_rank_that_crashes_is_a_training_error_not_a_traceback():
    from mpx.distributed.launch import spawn_training
    from mpx.errors import TrainingError

    # not an MpxError inside the rank (an option train_rank does not take): the parent names the failed rank
    with pytest.raises(TrainingError, match=r"run failed \(rank [01]\): TypeError: .*unexpected keyword"):
        spawn_training(2, "gloo", backend="cpu", no_such_option=1)
