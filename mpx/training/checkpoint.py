"""Checkpoints of a training run, written atomically (temp file + fsync + os.replace)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mpx import _io
from mpx.errors import CheckpointError
from mpx.training.state_validation import check_model_state, check_tensor, check_trainer_state

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
    path: str | os.PathLike, model: torch.nn.Module, trainer: Any = None, step: int = 0, **extra: Any
) -> Path:
    """Model weights, the MixedPrecision state (scaler, masters, optimizer), step, torch's RNG state, `extra`."""
    payload = {
        "schema": SCHEMA,
        "step": step,
        "model": model.state_dict(),
        "trainer": trainer.state_dict() if trainer is not None else None,
        "rng": torch.get_rng_state(),
        "extra": extra,
    }
    return write_checkpoint_file(path, payload)


def load_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module, trainer: Any = None, restore_rng: bool = True
) -> dict[str, Any]:
    """Restore what save_checkpoint wrote; returns the payload (its 'step' and 'extra' say where to go on)."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"no checkpoint at {source}; pass the path save_checkpoint wrote")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise CheckpointError(f"{source} is not a readable mpx checkpoint: {error}") from error
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise CheckpointError(f"{source} is not an mpx checkpoint (no {SCHEMA!r} schema)")
    _check_payload(source, payload, model, trainer, restore_rng)
    model.load_state_dict(payload["model"])
    if trainer is not None:
        trainer.load_state_dict(payload["trainer"])
    if restore_rng:
        torch.set_rng_state(payload["rng"])
    return payload


def _check_payload(source: Path, payload: dict[str, Any], model: torch.nn.Module, trainer: Any, rng: bool) -> None:
    """Everything load_checkpoint will apply, checked against the live objects first: a mismatch changes nothing."""
    if trainer is not None and payload.get("trainer") is None:
        raise CheckpointError(f"{source} holds no trainer state; it was saved without a MixedPrecision")
    try:
        check_model_state(model, payload.get("model"), CheckpointError)
        if trainer is not None:
            check_trainer_state(trainer, payload["trainer"], CheckpointError)
        if rng:
            check_tensor("rng", payload.get("rng"), torch.get_rng_state(), CheckpointError)
    except CheckpointError as error:
        raise CheckpointError(f"{source} does not fit: {error}") from None
