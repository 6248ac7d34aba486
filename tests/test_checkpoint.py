"""Checkpoints: bit-identical resume, atomic writes, a failed save keeps the previous checkpoint."""

import pytest
import torch

import mpx


def _setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 1)).half()
    trainer = mpx.MixedPrecision(
        model,
        torch.optim.AdamW(model.parameters(), lr=1e-2),
        policy="fp16-pure",
        loss_scale=mpx.DynamicLossScaler(init_scale=2.0**20, growth_interval=3),
    )
    return model, trainer


def _train(model, trainer, steps):
    for _ in range(steps):
        x = torch.randn(32, 8)  # from torch's global RNG, which the checkpoint carries
        trainer.zero_grad()
        with trainer.autocast():
            out = model(x.half())
        trainer.backward(mpx.mse_loss(out, x[:, :1] * 2))
        trainer.step()


def test_resume_mid_run_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    torch.manual_seed(1)
    model, trainer = _setup()
    torch.manual_seed(1)
    _train(model, trainer, 10)
    uninterrupted = [p.clone() for p in model.parameters()]
    uninterrupted_scaler, uninterrupted_skips = trainer.scaler.state_dict(), int(trainer.skipped_steps)
    assert uninterrupted_skips > 0  # the run exercises the scaler state too

    model, trainer = _setup()
    torch.manual_seed(1)
    _train(model, trainer, 4)
    mpx.save_checkpoint(tmp_path / "run.pt", model, trainer, step=4)
    _train(model, trainer, 3)  # work that the crash loses

    resumed_model, resumed = _setup(seed=123)
    payload = mpx.load_checkpoint(tmp_path / "run.pt", resumed_model, resumed)
    _train(resumed_model, resumed, 10 - payload["step"])
    assert int(resumed.skipped_steps) == uninterrupted_skips
    assert resumed.scaler.state_dict() == uninterrupted_scaler
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed_model.parameters(), strict=True))


def test_a_crash_mid_save_leaves_the_previous_checkpoint_readable(tmp_path, monkeypatch):
    model, trainer = _setup()
    _train(model, trainer, 2)
    path = tmp_path / "run.pt"
    mpx.save_checkpoint(path, model, trainer, step=2)
    saved = [p.clone() for p in model.parameters()]
    _train(model, trainer, 2)

    def failing_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        mpx.save_checkpoint(path, model, trainer, step=4)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temp file left behind
    restored, restored_trainer = _setup(seed=5)
    assert mpx.load_checkpoint(path, restored, restored_trainer)["step"] == 2
    assert all(torch.equal(a, b) for a, b in zip(saved, restored.parameters(), strict=True))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    model, trainer = _setup()
    with pytest.raises(mpx.CheckpointError, match="no checkpoint"):
        mpx.load_checkpoint(tmp_path / "absent.pt", model, trainer)


def test_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(1)}, path)
    model, trainer = _setup()
    with pytest.raises(mpx.CheckpointError, match="not an mpx checkpoint"):
        mpx.load_checkpoint(path, model, trainer)


def test_saving_into_a_missing_folder_is_a_clear_error(tmp_path):
    model, trainer = _setup()
    with pytest.raises(mpx.CheckpointError, match="does not exist"):
        mpx.save_checkpoint(tmp_path / "nope" / "run.pt", model, trainer)
