"""Sharded checkpoints through torch.distributed.checkpoint: each rank writes its shards, any world size reads.

Layout of the checkpoint folder:
  LATEST              the name of the committed version; replaced atomically, last, once every rank has written
  step-00000040/      a version: DCP's .metadata and __<rank>_0.distcp files (model, optimizer state, masters,
                      every rank's RNG: tensors only) and mpx.pt (schema, step, world size, scaler, param groups,
                      skipped steps, extras: loads with weights_only=True)
  .partial-step-.../  a save in progress, or one a crash interrupted: never read, removed by the next save
A crash mid-save leaves LATEST naming the previous version, which stays loadable.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from mpx import _io
from mpx.errors import CheckpointError
from mpx.training import rng
from mpx.training.safe_state import read_payload

from .fsdp import in_process_group
from .safe_reader import SafeFileSystemReader, tensor_entries
from .sharded_targets import load_targets

SCHEMA = "mpx-sharded-checkpoint/1"
POINTER = "LATEST"
META = "mpx.pt"
_VERSION = re.compile(r"step-\d{8}(?:-\d+)?")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """DCP warns that a process without a process group saves alone: that is what mpx asked for."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def _rank_and_world() -> tuple[int, int]:
    if in_process_group():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _from_rank0(outcome: tuple[str, str]) -> str:
    """Rank 0's (status, text) on every rank; an error there raises on every rank (none waits forever)."""
    if _rank_and_world()[1] > 1:
        box = [outcome]
        dist.broadcast_object_list(box, src=0)
        outcome = box[0]
    status, text = outcome
    if status != "ok":
        raise CheckpointError(text)
    return text


def _prepare(root: Path, step: int) -> tuple[str, str]:
    """Rank 0: create the folder, remove interrupted saves, pick the new version's name."""
    try:
        if root.exists() and not root.is_dir():
            return "error", f"cannot write sharded checkpoint {root}: it is a file; give a folder path"
        if not root.parent.is_dir():
            return "error", f"cannot write checkpoint {root}: folder {root.parent} does not exist; create it"
        root.mkdir(exist_ok=True)
        for stale in root.glob(".partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        name, suffix = f"step-{step:08d}", 0
        while (root / name).exists():
            suffix += 1
            name = f"step-{step:08d}-{suffix}"
        (root / f".partial-{name}").mkdir()
        return "ok", name
    except OSError as error:
        return "error", f"cannot write sharded checkpoint {root}: {error.strerror or error}"


def _tensors(model: torch.nn.Module, trainer: Any, rank: int) -> dict[str, torch.Tensor]:
    """Everything DCP writes, as flat keys: model.*, optimizer.<index>.<key>, masters.<i>, rng.<rank>.*."""
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    if trainer is not None:
        for index, param_state in trainer.optimizer.state_dict()["state"].items():
            for key, value in param_state.items():
                if isinstance(value, torch.Tensor):
                    state[f"optimizer.{index}.{key}"] = value
        state.update({f"masters.{i}": master for i, master in enumerate(trainer.master_weights.masters)})
    state.update({f"rng.{rank}.{key}": value for key, value in rng.capture().items()})
    return state


def _meta(trainer: Any, step: int, world: int, extra: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"schema": SCHEMA, "step": step, "world_size": world, "extra": extra, "trainer": None}
    if trainer is not None:
        optimizer = trainer.optimizer.state_dict()
        non_tensor = {
            index: {k: v for k, v in s.items() if not isinstance(v, torch.Tensor)}
            for index, s in optimizer["state"].items()
        }
        meta["trainer"] = {
            "policy": str(trainer.policy),
            "scaler": trainer.scaler.state_dict(),
            "param_groups": optimizer["param_groups"],
            "non_tensor_state": non_tensor,
            "skipped_steps": trainer.skipped_steps.detach().cpu().clone(),
        }
    return meta


def _commit(root: Path, name: str, meta: dict[str, Any]) -> tuple[str, str]:
    """Rank 0, after every rank wrote: mpx.pt, the rename, then LATEST (the commit), then older versions go."""
    try:
        staging = root / f".partial-{name}"
        torch.save(meta, staging / META)
        os.replace(staging, root / name)
        _io.atomic_write_text(root / POINTER, name + "\n")
        for old in root.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return "ok", name
    except OSError as error:
        return "error", f"cannot commit sharded checkpoint {root}: {error.strerror or error}"


def save_sharded(path: str | os.PathLike, model: torch.nn.Module, trainer: Any, step: int, extra: dict) -> Path:
    """Write a sharded checkpoint folder; every rank of the job calls it (collectives inside)."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"step must be an integer >= 0 (it names the version folder), not {step!r}")
    root = Path(path)
    rank, world = _rank_and_world()
    name = _from_rank0(_prepare(root, step) if rank == 0 else ("ok", ""))
    writer = dcp.FileSystemWriter(root / f".partial-{name}")
    with _quiet():
        dcp.save(_tensors(model, trainer, rank), storage_writer=writer, no_dist=not in_process_group())
    _from_rank0(_commit(root, name, _meta(trainer, step, world, extra)) if rank == 0 else ("ok", name))
    return root / name


def committed_version(root: Path) -> Path:
    """The folder LATEST names; a CheckpointError when there is no committed save."""
    pointer = root / POINTER
    if not pointer.is_file():
        raise CheckpointError(
            f"{root} holds no committed checkpoint (no {POINTER} file): no save of it finished; "
            "pass the folder save_checkpoint wrote"
        )
    name = pointer.read_text(errors="replace").strip()
    if not _VERSION.fullmatch(name) or not (root / name / ".metadata").is_file():
        raise CheckpointError(f"{root}/{POINTER} names {name[:80]!r}, which is not a saved version in {root}")
    return root / name


def load_sharded(
    root: Path, model: torch.nn.Module, trainer: Any, restore_rng: bool, *, trusted: bool = False
) -> dict[str, Any]:
    """Load the committed version into `model` / `trainer` on any number of ranks (DCP reshards)."""
    version = committed_version(root)
    meta = read_payload(version / META, trusted)
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise CheckpointError(f"{version} is not an mpx sharded checkpoint (no {SCHEMA!r} schema in {META})")
    if trainer is not None and meta.get("trainer") is None:
        raise CheckpointError(f"{version} holds no trainer state; it was saved without a MixedPrecision")
    reader = dcp.FileSystemReader(version) if trusted else SafeFileSystemReader(version)
    entries = tensor_entries(reader.read_metadata())
    rank = _rank_and_world()[0]
    targets = load_targets(entries, model, trainer, rank if restore_rng else None)
    with _quiet():
        dcp.load(targets.flat, storage_reader=reader, no_dist=not in_process_group())
    model.load_state_dict(targets.model)
    if trainer is not None:
        saved = meta["trainer"]
        state = {index: {**saved["non_tensor_state"].get(index, {}), **t} for index, t in targets.optimizer.items()}
        trainer.load_state_dict(
            {
                "policy": saved["policy"],
                "scaler": saved["scaler"],
                "masters": targets.masters,
                "optimizer": {"state": state, "param_groups": saved["param_groups"]},
                "skipped_steps": saved["skipped_steps"].to(trainer.skipped_steps.device),
            }
        )
    if targets.rng:
        rng.restore(targets.rng)
    return {key: meta[key] for key in ("schema", "step", "world_size", "extra")}
