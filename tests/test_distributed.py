"""Data parallel: found_inf is all-reduced, so every rank skips together (2 processes, gloo, localhost)."""

import math
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import mpx
from mpx.distributed.launch import exit_finished_rank

STEPS, POISONED_STEPS = 6, (1, 4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 4))
        trainer = mpx.MixedPrecision(
            model,
            torch.optim.Adam(model.parameters(), lr=1e-2),
            policy="fp16-mixed",
            loss_scale=mpx.DynamicLossScaler(init_scale=2.0**8, growth_interval=2),
        )
        generator = torch.Generator().manual_seed(rank)
        for step in range(STEPS):
            trainer.zero_grad()
            with trainer.autocast():
                out = model(torch.randn(16, 8, generator=generator))
            trainer.backward(mpx.mse_loss(out, torch.zeros_like(out)))
            if rank == 0 and step in POISONED_STEPS:
                model.module.weight.grad.view(-1)[0] = math.inf  # overflow on this rank only
            trainer.step()
        torch.save(
            {
                "params": [p.detach() for p in model.parameters()],
                "optimizer": trainer.optimizer.state_dict()["state"],
                "scaler": trainer.scaler.state_dict(),
                "skipped": int(trainer.skipped_steps),
            },
            os.path.join(folder, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()
    exit_finished_rank()


def test_ranks_skip_together_and_stay_identical(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["skipped"] == rank1["skipped"] == len(POISONED_STEPS)
    assert rank0["scaler"] == rank1["scaler"]
    assert all(torch.equal(a, b) for a, b in zip(rank0["params"], rank1["params"], strict=True))
    for index, state in rank0["optimizer"].items():
        for key, value in state.items():
            assert torch.equal(value, rank1["optimizer"][index][key]), key
    assert rank0["optimizer"][0]["step"] == STEPS - len(POISONED_STEPS)
