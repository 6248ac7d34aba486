"""FSDP2 under MixedPrecision on 2 gloo ranks (real processes, launched once for the module).

fp16/bf16 training matches one process on the full batch; an overflow on one rank's shard skips the step
everywhere; a sharded checkpoint resumes bit-identically on 2 ranks and loads on 1 (and 1 -> 2); a rank
killed mid-save leaves the previous checkpoint loadable.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fsdp_worker import LR, RESUME_AT, STEPS, full_batch, make_model, scaler

import mpx

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("fsdp_worker.py")
# Adam moves a weight by at most LR a step; gradients that differ in their last bits of the compute format
# (another summation order) move it by about eps * LR: after STEPS steps, eps * LR * STEPS
TOLERANCE = {name: mpx.format(name.removesuffix("-mixed")).eps * LR * STEPS for name in ("fp16-mixed", "bf16-mixed")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, backend: str, folder: Path, phases: str) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    port = str(_free_port())
    return [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), str(world), port, str(folder), backend, phases],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(world)
    ]


def run_until_killed_mid_save(processes: list[subprocess.Popen], folder: Path, limit_s: float = 240) -> None:
    """Wait until the last rank hangs inside its second save, kill it (SIGKILL), then let the others end."""
    deadline = time.monotonic() + limit_s
    while not (folder / "writing").exists():
        crashed = [p for p in processes if p.poll() is not None]
        if crashed or time.monotonic() > deadline:
            for p in processes:
                p.kill()
            logs = "\n".join(p.communicate()[0].decode(errors="replace")[-3000:] for p in processes)
            pytest.fail(f"the ranks did not reach the hanging save:\n{logs}")
        time.sleep(0.2)
    processes[-1].send_signal(signal.SIGKILL)
    for p in processes[:-1]:
        try:
            p.wait(timeout=90)  # gloo notices the dead peer and the save raises
        except subprocess.TimeoutExpired:
            p.kill()
    for p in processes:
        p.communicate()


def train_one_process(precision: str, steps: int, growth_interval: int = 2000):
    """The reference: one process, the full batch, the same policy, data and optimizer."""
    model = make_model()
    trainer = mpx.MixedPrecision(
        model, torch.optim.Adam(model.parameters(), lr=LR), "cpu", precision, scaler(precision)
    )
    for step in range(steps):
        x, y = full_batch(step)
        trainer.zero_grad()
        with trainer.autocast():
            out = model(x)
        trainer.backward(mpx.mse_loss(out, y))
        trainer.step()
    return model, trainer


def optimizer_tensors(trainer) -> dict:
    return {f"optimizer.{i}.{k}": v for i, s in trainer.optimizer.state_dict()["state"].items() for k, v in s.items()}


@pytest.fixture(scope="module")
def gloo_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fsdp")
    model, trainer = train_one_process("fp16-mixed", 3, growth_interval=2)
    mpx.save_checkpoint(folder / "one_rank", model, trainer, step=3, sharded=True)
    torch.save({"params": dict(model.named_parameters()), **optimizer_tensors(trainer)}, folder / "one_rank.pt")
    run_until_killed_mid_save(launch(2, "gloo", folder, "ABCDFE"), folder)
    return folder


@pytest.mark.parametrize("precision", ["fp16-mixed", "bf16-mixed"])
def test_two_ranks_match_one_process_on_the_full_batch(gloo_run, precision):
    sharded = torch.load(gloo_run / f"match-{precision}.pt", weights_only=True)
    model, trainer = train_one_process(precision, STEPS)
    for name, param in model.named_parameters():
        difference = (sharded[f"param.{name}"] - param.detach()).abs().max().item()
        assert difference <= TOLERANCE[precision], (name, difference)
        assert not torch.equal(sharded[f"param.{name}"], make_model().state_dict()[name])  # it trained
    assert int(sharded["skipped_steps"]) == int(trainer.skipped_steps)
    assert float(sharded["scale"]) == float(trainer.scaler.loss_scale)


def test_an_overflow_on_one_rank_skips_the_step_on_every_rank_leaving_every_shard_unchanged(gloo_run):
    ranks = [torch.load(gloo_run / f"skip-rank{r}.pt", weights_only=True) for r in (0, 1)]
    for result in ranks:
        assert result["skipped"] and result["identical"] and result["shards"] > 4
        assert result["skipped_steps"] == 1
        assert result["scale_after"] == result["scale_before"] / 2
    assert ranks[0] == ranks[1]


def test_hybrid_sharding_skips_on_every_rank_too(gloo_run):
    ranks = [torch.load(gloo_run / f"hybrid-rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["skipped"] and r["identical"] and r["skipped_steps"] == 1 for r in ranks)


def test_a_sharded_checkpoint_resumes_bit_identically_on_two_ranks(gloo_run):
    run = torch.load(gloo_run / "resume.pt", weights_only=True)
    assert int(run["saved"]["skipped_steps"]) == 1  # the run holds scaler state worth restoring
    assert run["final"].keys() == run["resumed"].keys()
    for key, value in run["final"].items():
        assert torch.equal(value, run["resumed"][key]), key
    for rank in (0, 1):
        result = torch.load(gloo_run / f"resume-rank{rank}.pt", weights_only=True)
        assert result["same_draws"]  # each rank's torch and numpy RNG came back
        assert result["payload"]["step"] == RESUME_AT and result["payload"]["extra"] == {"note": "mid-run"}


def test_a_two_rank_checkpoint_loads_bit_identically_on_one_rank(gloo_run):
    saved = torch.load(gloo_run / "resume.pt", weights_only=True)["saved"]
    model = make_model()
    trainer = mpx.MixedPrecision(model, torch.optim.Adam(model.parameters(), lr=LR), "cpu", "fp16-mixed")
    payload = mpx.load_checkpoint(gloo_run / "ckpt", model, trainer, restore_rng=False)
    assert payload["world_size"] == 2 and payload["step"] == RESUME_AT
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), saved[f"param.{name}"]), name
    for key, value in optimizer_tensors(trainer).items():
        assert torch.equal(value, saved[key]), key
    assert float(trainer.scaler.loss_scale) == float(saved["scale"])
    assert int(trainer.skipped_steps) == int(saved["skipped_steps"])
    x, y = full_batch(RESUME_AT)  # and it trains on from there, on the full batch
    trainer.zero_grad()
    with trainer.autocast():
        out = model(x)
    trainer.backward(mpx.mse_loss(out, y))
    assert not trainer.step().was_skipped


def test_a_one_rank_checkpoint_loads_on_two_ranks(gloo_run):
    one_rank = torch.load(gloo_run / "one_rank.pt", weights_only=True)
    two_ranks = torch.load(gloo_run / "from_one_rank.pt", weights_only=True)
    for name, param in one_rank.pop("params").items():
        assert torch.equal(two_ranks[f"param.{name}"], param.detach()), name
    for key, value in one_rank.items():
        assert torch.equal(two_ranks[key], value), key


def test_killing_a_rank_mid_save_leaves_the_previous_checkpoint_loadable(gloo_run):
    folder = gloo_run / "killed"
    assert any(p.name.startswith(".partial-step-00000002") for p in folder.iterdir())  # the save was under way
    assert (folder / "LATEST").read_text().strip() == "step-00000001"
    saved = torch.load(gloo_run / "killed-saved.pt", weights_only=True)
    model = make_model()
    trainer = mpx.MixedPrecision(model, torch.optim.Adam(model.parameters(), lr=LR), "cpu", "fp16-mixed")
    assert mpx.load_checkpoint(folder, model, trainer, restore_rng=False)["step"] == 1
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), saved[f"param.{name}"]), name
    mpx.save_checkpoint(folder, model, trainer, step=5, sharded=True)  # the next save clears the wreck
    assert sorted(p.name for p in folder.iterdir()) == ["LATEST", "step-00000005"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nccl_fsdp2_skips_together_and_resumes(tmp_path):
    world = max(1, min(2, torch.cuda.device_count()))
    processes = launch(world, "nccl", tmp_path, "BC")
    logs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in processes]
    assert all(p.returncode == 0 for p in processes), "\n".join(log[-3000:] for log in logs)
    for rank in range(world):
        result = torch.load(tmp_path / f"skip-rank{rank}.pt", weights_only=True)
        assert result["skipped"] and result["identical"]
    run = torch.load(tmp_path / "resume.pt", weights_only=True)
    for key, value in run["final"].items():
        assert torch.equal(value, run["resumed"][key]), key
