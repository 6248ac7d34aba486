"""One rank of `mpx train --nproc N`: the synthetic MLP task, data-parallel (DDP) or sharded (FSDP2).

Every rank draws the same global batch and trains on its slice of it, so N ranks see the data one process
would; gradients are averaged by DDP's all-reduce or FSDP2's reduce-scatter, found_inf by mpx's all-reduce.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist

from mpx.errors import TrainingInputError
from mpx.plugins.manager import get_backend
from mpx.policy import policy as make_policy
from mpx.training.losses import mse_loss
from mpx.training.memory import bytes_per_parameter
from mpx.training.synthetic import STATE_RECIPES, TrainSummary, make_model, make_task
from mpx.training.trainer import MixedPrecision

PARALLEL = ("ddp", "fsdp")


def wrap(model: torch.nn.Module, parallel: str, precision: str, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel(model), or fully_shard on every Linear and the root with the policy's mp_policy."""
    if parallel == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard

    mp_policy = make_policy(precision).fsdp_mixed_precision()
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mp_policy=mp_policy)
    return fully_shard(model, mp_policy=mp_policy)


def train_rank(
    backend: str,
    precision: str,
    parallel: str,
    steps: int,
    seed: int,
    lr: float,
    batch_size: int,
    hidden: int,
    loss_scale: Any = None,
    state_recipe: str = "fp32",
) -> TrainSummary:
    """Train this rank's share; every rank returns the same summary (losses averaged over the ranks)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    if batch_size % world:
        raise TrainingInputError(f"--batch-size {batch_size} does not split among {world} ranks; use a multiple")
    resolved = get_backend(backend)
    device = torch.device(resolved.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    x, y = make_task(seed)
    model = make_model(seed, x.shape[1], hidden).to(device)
    if parallel == "ddp":  # DDP builds its buckets in the parameters' dtype: store them as the policy says first
        model.to(make_policy(precision).params.torch_dtype)
    model = wrap(model, parallel, precision, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    mp = MixedPrecision(model, optimizer, resolved, precision, loss_scale, state_formats=STATE_RECIPES[state_recipe])
    order = torch.Generator().manual_seed(seed + 1)
    share = batch_size // world
    losses: list[torch.Tensor] = []
    start = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(0, x.shape[0], (batch_size,), generator=order)[rank * share : (rank + 1) * share]
        mp.zero_grad()
        with mp.autocast():
            out = model(x[index].to(device, next(model.parameters()).dtype))
        loss = mse_loss(out, y[index].to(device))
        mp.backward(loss)
        mp.step()
        losses.append(loss.detach().float())
    curve = torch.stack(losses)
    dist.all_reduce(curve)  # one collective at the end: the mean loss over the ranks' equal shares
    curve /= world
    elapsed = time.perf_counter() - start
    return TrainSummary(
        backend=resolved.name,
        precision=str(mp.policy),
        steps=steps,
        seed=seed,
        final_loss=float(curve[-10:].mean()),
        steps_skipped=int(mp.skipped_steps),
        final_scale=float(mp.scaler.loss_scale),
        step_time_ms=1000 * elapsed / steps,
        bytes_per_param=bytes_per_parameter(model, optimizer, mp),
        master_weights=True,
        loss_curve=curve.cpu().tolist(),
        world_size=world,
        parallel=parallel,
    )
