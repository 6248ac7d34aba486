"""Checkpoints of a training run, written atomically (temp file + fsync + os.replace)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mpx import _io
from mpx.errors import CheckpointError
from mpx.training import rng
from mpx.training.safe_state import check_extras, read_payload
from mpx.training.state_validation import check_model_state, check_trainer_state

SCHEMA = "mpx-checkpoint/1"


def write_checkpoint_file(path: str | os.PathLike, payload: Any, *, follow_symlinks: bool = False) -> Path:
    """torch.save `payload` to `path` atomically: readers see the old file or the new one, never half of one.

    Refuses a target that is a symlink (unless `follow_symlinks`) or not a regular file; disk full is a
    CheckpointError naming the path.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise CheckpointError(f"cannot write checkpoint {target}: folder {target.parent} does not exist; create it")
    try:
        return _io.atomic_write(target, lambda stream: torch.save(payload, stream), follow_symlinks=follow_symlinks)
    except _io.WriteError as error:
        raise CheckpointError(f"checkpoint: {error}") from None


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    trainer: Any = None,
    step: int = 0,
    *,
    sharded: bool | None = None,
    **extra: Any,
) -> Path:
    """Model weights, the MixedPrecision state (scaler, masters, optimizer), step, every RNG's state, `extra`.

    `extra` must load with weights_only=True (checked now: CheckpointError names the offending key and type).
    sharded: write a folder through torch.distributed.checkpoint, every rank its shards (None: when the model's
    parameters are DTensors, as under FSDP2's fully_shard); call it on every rank then.
    """
    check_extras(extra)
    if sharded is None:
        from mpx.distributed.fsdp import sharding_mesh

        sharded = sharding_mesh(model) is not None
    if sharded:
        from mpx.distributed.sharded_checkpoint import save_sharded

        return save_sharded(path, model, trainer, step, extra)
    payload = {
        "schema": SCHEMA,
        "step": step,
        "model": model.state_dict(),
        "trainer": trainer.state_dict() if trainer is not None else None,
        "rng": rng.capture(),
        "extra": extra,
    }
    return write_checkpoint_file(path, payload)


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    trainer: Any = None,
    restore_rng: bool = True,
    *,
    trusted: bool = False,
) -> dict[str, Any]:
    """Restore what save_checkpoint wrote (a file, or a sharded folder on any number of ranks).

    Returns the payload (its 'step' and 'extra' say where to go on). Files are read with weights_only=True:
    pickled objects are refused unless `trusted=True` (only for files you trust: unpickling runs code).
    """
    source = Path(path)
    if source.is_dir():
        from mpx.distributed.sharded_checkpoint import load_sharded

        return load_sharded(source, model, trainer, restore_rng, trusted=trusted)
    if not source.is_file():
        raise CheckpointError(f"no checkpoint at {source}; pass the path save_checkpoint wrote")
    payload = read_payload(source, trusted)
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise CheckpointError(f"{source} is not an mpx checkpoint (no {SCHEMA!r} schema)")
    _check_payload(source, payload, model, trainer, restore_rng)
    model.load_state_dict(payload["model"])
    if trainer is not None:
        trainer.load_state_dict(payload["trainer"])
    if restore_rng:
        rng.restore(payload["rng"])
    return payload


def _check_payload(
    source: Path, payload: dict[str, Any], model: torch.nn.Module, trainer: Any, restore_rng: bool
) -> None:
    """Everything load_checkpoint will apply, checked against the live objects first: a mismatch changes nothing."""
    if trainer is not None and payload.get("trainer") is None:
        raise CheckpointError(f"{source} holds no trainer state; it was saved without a MixedPrecision")
    try:
        check_model_state(model, payload.get("model"), CheckpointError)
        if trainer is not None:
            check_trainer_state(trainer, payload["trainer"], CheckpointError)
        if restore_rng:
            rng.check(payload.get("rng"))
    except CheckpointError as error:
        raise CheckpointError(f"{source} does not fit: {error}") from None
