"""One rank of the FSDP2 tests: `python tests/fsdp_worker.py RANK WORLD PORT FOLDER BACKEND PHASES`.

Phases: A trains fp16-mixed and bf16-mixed for STEPS steps; B poisons one rank's gradient shard; C saves a
sharded checkpoint mid-run, finishes, then resumes from it; D loads a 1-rank checkpoint; F is B with hybrid
sharding; E saves, then hangs in the next save on the last rank (the test kills it there). Results go to
FOLDER as .pt files.
"""

import datetime
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import mpx
from mpx.distributed.launch import exit_finished_rank

START = time.monotonic()
STEPS, LR, BATCH = 20, 1e-3, 16
RESUME_AT, RESUME_END, POISON_STEP = 4, 8, 1


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))


def full_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's global batch; rank r of w trains on rows [r*B/w, (r+1)*B/w)."""
    generator = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(BATCH, 8, generator=generator)
    return x, torch.sin(x[:, :4] * 2)


def scaler(precision: str, growth_interval: int = 2000):
    """fp16: a scale that grows every `growth_interval` steps (2: the checkpoint runs hold scaler state)."""
    return mpx.DynamicLossScaler(init_scale=2.0**10, growth_interval=growth_interval) if "fp16" in precision else None


def train_step(model, trainer, step, rank, world, device, poison_rank=None):
    x, y = full_batch(step)
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    trainer.zero_grad()
    with trainer.autocast():
        out = model(x[rows].to(device))
    trainer.backward(mpx.mse_loss(out, y[rows].to(device)))
    if poison_rank == rank:
        next(model.parameters()).grad._local_tensor.view(-1)[0] = math.inf  # an overflow in this rank's shard only
    return trainer.step()


def build(precision, device, backend_name, growth_interval=2, mesh=None):
    model = make_model().to(device)
    policy = mpx.policy(precision)
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh, mp_policy=policy.fsdp_mixed_precision())
    fully_shard(model, mesh=mesh, mp_policy=policy.fsdp_mixed_precision())
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    return model, mpx.MixedPrecision(model, optimizer, backend_name, precision, scaler(precision, growth_interval))


def full_state(model, trainer) -> dict:
    """Every rank calls (full_tensor gathers); the whole model and optimizer state as plain CPU tensors."""
    state = {f"param.{n}": p.full_tensor().cpu() for n, p in model.named_parameters()}
    for index, param_state in trainer.optimizer.state_dict()["state"].items():
        for key, value in param_state.items():
            full = value.full_tensor() if hasattr(value, "full_tensor") else value
            state[f"optimizer.{index}.{key}"] = full.detach().cpu().clone()
    state["scale"] = trainer.scaler.loss_scale.cpu().clone()
    state["skipped_steps"] = trainer.skipped_steps.cpu().clone()
    return state


def local_shards(model, trainer) -> list[torch.Tensor]:
    tensors = [p._local_tensor for p in model.parameters()]
    tensors += [
        v._local_tensor if hasattr(v, "_local_tensor") else v
        for s in trainer.optimizer.state.values()
        for v in s.values()
    ]
    return [t.detach().clone() for t in tensors]


def phase_a(rank, world, device, backend_name, out):
    for precision in ("fp16-mixed", "bf16-mixed"):
        model, trainer = build(precision, device, backend_name, growth_interval=2000)
        for step in range(STEPS):
            train_step(model, trainer, step, rank, world, device)
        state = full_state(model, trainer)
        if rank == 0:
            torch.save(state, out / f"match-{precision}.pt")


def phase_b(rank, world, device, backend_name, out, mesh=None, name="skip"):
    model, trainer = build("fp16-mixed", device, backend_name, mesh=mesh)
    for step in range(2):
        train_step(model, trainer, step, rank, world, device)
    before, scale = local_shards(model, trainer), trainer.scaler.loss_scale.clone()
    result = train_step(model, trainer, 2, rank, world, device, poison_rank=0)
    after = local_shards(model, trainer)
    torch.save(
        {
            "skipped": result.was_skipped,
            "identical": all(torch.equal(a, b) for a, b in zip(before, after, strict=True)),
            "shards": len(before),
            "scale_before": float(scale),
            "scale_after": float(trainer.scaler.loss_scale),
            "skipped_steps": int(trainer.skipped_steps),
        },
        out / f"{name}-rank{rank}.pt",
    )


def phase_f(rank, world, device, backend_name, out):
    """Hybrid sharding (HSDP): a 2-D mesh, replicated over one dimension, sharded over the other."""
    mesh = init_device_mesh(device.type, (world, 1), mesh_dim_names=("replicate", "shard"))
    phase_b(rank, world, device, backend_name, out, mesh=mesh, name="hybrid")


def draws() -> list:
    return [torch.rand(3), torch.from_numpy(np.random.rand(3))]


def phase_c(rank, world, device, backend_name, out):
    torch.manual_seed(10 + rank)
    np.random.seed(10 + rank)
    model, trainer = build("fp16-mixed", device, backend_name)
    for step in range(RESUME_AT):
        train_step(model, trainer, step, rank, world, device, poison_rank=1 % world if step == POISON_STEP else None)
    mpx.save_checkpoint(out / "ckpt", model, trainer, step=RESUME_AT, note="mid-run")
    saved = full_state(model, trainer)
    expected_draws = draws()
    for step in range(RESUME_AT, RESUME_END):
        train_step(model, trainer, step, rank, world, device)
    final = full_state(model, trainer)

    torch.manual_seed(1234)
    np.random.seed(1234)
    model, trainer = build("fp16-mixed", device, backend_name)
    payload = mpx.load_checkpoint(out / "ckpt", model, trainer)
    same_draws = all(torch.equal(a, b) for a, b in zip(draws(), expected_draws, strict=True))
    for step in range(payload["step"], RESUME_END):
        train_step(model, trainer, step, rank, world, device)
    resumed = full_state(model, trainer)
    torch.save({"same_draws": same_draws, "payload": payload}, out / f"resume-rank{rank}.pt")
    if rank == 0:
        torch.save({"saved": saved, "final": final, "resumed": resumed}, out / "resume.pt")


def phase_d(rank, world, device, backend_name, out):
    model, trainer = build("fp16-mixed", device, backend_name)
    mpx.load_checkpoint(out / "one_rank", model, trainer, restore_rng=False)
    state = full_state(model, trainer)
    if rank == 0:
        torch.save(state, out / "from_one_rank.pt")


def phase_e(rank, world, device, backend_name, out):
    model, trainer = build("fp16-mixed", device, backend_name)
    train_step(model, trainer, 0, rank, world, device)
    mpx.save_checkpoint(out / "killed", model, trainer, step=1)
    state = full_state(model, trainer)
    if rank == 0:
        torch.save(state, out / "killed-saved.pt")
    train_step(model, trainer, 1, rank, world, device)
    if rank == world - 1:
        original = FileSystemWriter.write_data

        def write_then_hang(self, plan, planner):
            result = original(self, plan, planner)  # this rank's shards are on disk, the commit is not
            (out / "writing").touch()
            time.sleep(600)
            return result

        FileSystemWriter.write_data = write_then_hang
    mpx.save_checkpoint(out / "killed", model, trainer, step=2)


def main() -> None:
    print(f"rank {sys.argv[1]} imported at {time.monotonic() - START:.1f} s", flush=True)
    rank, world, port, folder, backend, phases = sys.argv[1:7]
    rank, world, out = int(rank), int(world), Path(folder)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    timeout = datetime.timedelta(seconds=60)
    dist.init_process_group(backend, rank=rank, world_size=int(world), timeout=timeout)
    device = torch.device("cuda", rank % torch.cuda.device_count()) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend_name = "cuda" if device.type == "cuda" else "cpu"
    for phase in phases:
        globals()[f"phase_{phase.lower()}"](rank, world, device, backend_name, out)
        print(f"rank {rank} phase {phase} done at {time.monotonic() - START:.1f} s", flush=True)
    dist.destroy_process_group()
    exit_finished_rank()


if __name__ == "__main__":
    main()
