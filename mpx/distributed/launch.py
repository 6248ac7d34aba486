"""`mpx train --nproc N`: start N local ranks (gloo on CPUs, nccl with one GPU each) and collect rank 0's summary.

Under torchrun (RANK, WORLD_SIZE and MASTER_ADDR set by it) `mpx train --parallel ...` runs as the rank it is
given instead of starting processes: `torchrun --nproc-per-node 2 -m mpx train --parallel fsdp`.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as multiprocessing
from torch.multiprocessing.spawn import ProcessException

from mpx.errors import BackendUnavailableError, MpxError, PolicyError, TrainingError, TrainingInputError
from mpx.policy import policy as make_policy
from mpx.training.synthetic import TrainSummary

DIST_BACKENDS = ("gloo", "nccl")


def under_torchrun() -> bool:
    """Whether torchrun (or another launcher) started this process as one rank of a job."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def default_dist_backend(backend: str) -> str:
    return "nccl" if backend.split(":")[0] == "cuda" else "gloo"


def check_launch(nproc: int, dist_backend: str, parallel: str, precision: str, batch_size: int) -> None:
    """Refuse before starting anything: too few GPUs for nccl, a policy FSDP2 cannot shard, an uneven batch."""
    if dist_backend not in DIST_BACKENDS:
        raise TrainingInputError(f"--dist-backend must be one of {', '.join(DIST_BACKENDS)}, not {dist_backend!r}")
    if dist_backend == "nccl":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus < nproc:
            raise BackendUnavailableError(
                f"nccl needs one CUDA GPU per rank: {nproc} ranks, {gpus} GPUs here; use --dist-backend gloo"
            )
    if parallel == "fsdp":
        chosen = make_policy(precision)
        try:
            chosen.fsdp_mixed_precision()
        except PolicyError:
            mixed = "fp16-mixed" if chosen.compute.name == "fp16" else "bf16-mixed"
            raise PolicyError(
                f"--parallel fsdp keeps fp32 sharded parameters as the master weights, which --precision {precision} "
                f"does not; use --precision {mixed} (or --parallel ddp)"
            ) from None
    if batch_size % nproc:
        raise TrainingInputError(f"--batch-size {batch_size} does not split among {nproc} ranks; use a multiple")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank_entry(rank: int, nproc: int, port: int, dist_backend: str, folder: str, options: dict) -> None:
    """A spawned rank: join the job, train, rank 0 writes the summary; an mpx error is written for the parent."""
    from mpx.distributed.data_parallel import train_rank

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun does: ranks share the cores instead of fighting over them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    dist.init_process_group(dist_backend, rank=rank, world_size=nproc)
    try:
        summary = train_rank(**options)
        if rank == 0:
            Path(folder, "summary.json").write_text(json.dumps(asdict(summary)))
    except MpxError as error:
        Path(folder, f"error-{rank}.txt").write_text(str(error))
        raise SystemExit(2) from None
    finally:
        dist.destroy_process_group()
    exit_finished_rank()


def exit_finished_rank() -> None:
    """End a rank that finished its work without interpreter finalization.

    gloo's worker threads can still hold tensors when a spawned interpreter tears down, and destroying them
    then aborts the process ("terminate called without an active exception", SIGABRT) after the work is
    done; torch's own atexit fix for it was abandoned (pytorch/pytorch#179291). Call it after
    `destroy_process_group`, once everything is written: the collection below frees DDP's reducer and gloo's
    work objects while the interpreter is whole, and the exit skips the teardown.
    """
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn_training(nproc: int, dist_backend: str, **options: Any) -> TrainSummary:
    """Train on `nproc` local ranks started here; returns rank 0's summary (the mean loss over the ranks)."""
    with tempfile.TemporaryDirectory(prefix="mpx-train-") as folder:
        try:
            multiprocessing.start_processes(
                _rank_entry,
                args=(nproc, _free_port(), dist_backend, folder, options),
                nprocs=nproc,
                start_method="spawn",
            )
        except ProcessException as failure:
            errors = sorted(Path(folder).glob("error-*.txt"))
            if errors:
                raise MpxError(errors[0].read_text()) from None
            last_line = str(failure).strip().splitlines()[-1]  # the exception, not the rank's whole traceback
            raise TrainingError(
                f"a rank of the distributed run failed (rank {failure.error_index}): {last_line}"
            ) from None
        return TrainSummary(**json.loads(Path(folder, "summary.json").read_text()))


def torchrun_training(dist_backend: str, **options: Any) -> TrainSummary | None:
    """Train as the rank torchrun started; returns the summary on rank 0 and None on the others."""
    from mpx.distributed.data_parallel import train_rank

    dist.init_process_group(dist_backend)
    try:
        summary = train_rank(**options)
        return summary if dist.get_rank() == 0 else None
    finally:
        dist.destroy_process_group()
