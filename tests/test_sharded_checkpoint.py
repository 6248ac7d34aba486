"""Sharded checkpoints in one process: the folder layout, safe loading, refusals that change nothing.

(Several ranks, resharding and a killed rank: tests/test_distributed_fsdp.py.)
"""

import pickle

import numpy as np
import pytest
import torch

import mpx


def _setup(seed=0, width=16):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.GELU(), torch.nn.Linear(width, 1)).half()
    trainer = mpx.MixedPrecision(model, torch.optim.AdamW(model.parameters(), lr=1e-2), policy="fp16-pure")
    return model, trainer


def _train(model, trainer, steps):
    for _ in range(steps):
        x = torch.randn(32, 8)
        trainer.zero_grad()
        with trainer.autocast():
            out = model(x.half())
        trainer.backward(mpx.mse_loss(out, x[:, :1]))
        trainer.step()


def test_resume_from_a_sharded_folder_is_bit_identical(tmp_path):
    model, trainer = _setup()
    _train(model, trainer, 3)
    np.random.seed(5)
    mpx.save_checkpoint(tmp_path / "run", model, trainer, step=3, sharded=True, epoch=1)
    expected_draw = np.random.rand()
    _train(model, trainer, 4)
    reference = [p.clone() for p in model.parameters()]
    resumed_model, resumed = _setup(seed=9)
    np.random.seed(6)
    payload = mpx.load_checkpoint(tmp_path / "run", resumed_model, resumed)
    assert payload == {"schema": "mpx-sharded-checkpoint/1", "step": 3, "world_size": 1, "extra": {"epoch": 1}}
    assert np.random.rand() == expected_draw
    _train(resumed_model, resumed, 4)
    assert all(torch.equal(a, b) for a, b in zip(reference, resumed_model.parameters(), strict=True))


def test_the_folder_holds_latest_one_version_and_no_temporaries(tmp_path):
    model, trainer = _setup()
    for step in (1, 2, 2):
        mpx.save_checkpoint(tmp_path / "run", model, trainer, step=step, sharded=True)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["LATEST", "step-00000002-1"]
    assert (tmp_path / "run" / "LATEST").read_text() == "step-00000002-1\n"
    version = sorted(p.name for p in (tmp_path / "run" / "step-00000002-1").iterdir())
    assert version == [".metadata", "__0_0.distcp", "mpx.pt"]


def test_a_folder_without_a_committed_save_is_a_clear_error(tmp_path):
    (tmp_path / "run" / ".partial-step-00000001").mkdir(parents=True)
    model, trainer = _setup()
    with pytest.raises(mpx.CheckpointError, match="no committed checkpoint"):
        mpx.load_checkpoint(tmp_path / "run", model, trainer)


def test_latest_must_name_a_version_inside_the_folder(tmp_path):
    model, trainer = _setup()
    mpx.save_checkpoint(tmp_path / "run", model, trainer, sharded=True)
    (tmp_path / "run" / "LATEST").write_text("../elsewhere\n")
    with pytest.raises(mpx.CheckpointError, match="not a saved version"):
        mpx.load_checkpoint(tmp_path / "run", model, trainer)


def test_crafted_metadata_is_refused_without_running_it(tmp_path):
    model, trainer = _setup()
    mpx.save_checkpoint(tmp_path / "run", model, trainer, sharded=True)

    class Bomb:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    version = tmp_path / "run" / (tmp_path / "run" / "LATEST").read_text().strip()
    (version / ".metadata").write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(mpx.CheckpointError, match="trusted=True"):
        mpx.load_checkpoint(tmp_path / "run", model, trainer)
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_of_another_model_changes_nothing(tmp_path):
    model, trainer = _setup()
    mpx.save_checkpoint(tmp_path / "run", model, trainer, sharded=True)
    other, other_trainer = _setup(seed=1, width=32)
    before = [p.clone() for p in other.parameters()]
    with pytest.raises(mpx.CheckpointError, match=r"model.0.weight.*\(16, 8\).*\(32, 8\)"):
        mpx.load_checkpoint(tmp_path / "run", other, other_trainer)
    assert all(torch.equal(a, b) for a, b in zip(before, other.parameters(), strict=True))


def test_an_unsafe_extra_fails_before_any_folder_is_made(tmp_path):
    model, trainer = _setup()
    with pytest.raises(mpx.CheckpointError, match=r"extra 'state'\['rng'\]: a numpy.ndarray"):
        mpx.save_checkpoint(tmp_path / "run", model, trainer, sharded=True, state={"rng": np.zeros(3)})
    assert not (tmp_path / "run").exists()


def test_a_sharded_save_onto_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    model, trainer = _setup()
    with pytest.raises(mpx.CheckpointError, match="it is a file; give a folder path"):
        mpx.save_checkpoint(tmp_path / "run", model, trainer, sharded=True)


def test_fsdp_mixed_precision_follows_the_policy():
    bf16 = mpx.policy("bf16-mixed").fsdp_mixed_precision()
    assert (bf16.param_dtype, bf16.reduce_dtype, bf16.output_dtype) == (torch.bfloat16, torch.float32, torch.float32)
    fp16 = mpx.policy("fp16-mixed").fsdp_mixed_precision(reduce_dtype="bf16")
    assert (fp16.param_dtype, fp16.reduce_dtype) == (torch.float16, torch.bfloat16)
    assert mpx.policy("fp32").fsdp_mixed_precision().param_dtype is None


@pytest.mark.parametrize(
    "preset, message",
    [("fp16-pure", "use mpx.policy\\('fp16-mixed'\\)"), ("fp8-hybrid", "torch does not compute in fp8_e4m3")],
)
def test_fsdp_mixed_precision_refuses_what_fsdp2_cannot_run(preset, message):
    with pytest.raises(mpx.PolicyError, match=message):
        mpx.policy(preset).fsdp_mixed_precision()


def test_fsdp_mixed_precision_names_a_bad_dtype():
    with pytest.raises(mpx.PolicyError, match="expected a format name"):
        mpx.policy("bf16-mixed").fsdp_mixed_precision(reduce_dtype="fp17")


def test_the_step_must_be_a_whole_number(tmp_path):
    model, trainer = _setup()
    with pytest.raises(mpx.CheckpointError, match="step must be an integer >= 0"):
        mpx.save_checkpoint(tmp_path / "run", model, trainer, step=2.5, sharded=True)
