"""Checkpoints of a training run, written atomically (temp file + fsync + os.replace)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mpx import _io
from mpx.errors import CheckpointError

SCHEMA = "mpx-checkpoint/1"


def write_checkpoint_file(path: str | os.PathLike, payload: Any) -> Path:
    """torch.save `payload` to `path` atomically: readers see the old file or the new one, never half of one."""
    target = Path(path)
    if not target.parent.is_dir():
        raise CheckpointError(f"cannot write checkpoint {target}: folder {target.parent} does not exist; create it")
    return _io.atomic_write(target, lambda stream: torch.save(payload, stream))


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
    model.load_state_dict(payload["model"])
    if trainer is not None:
        if payload["trainer"] is None:
            raise CheckpointError(f"{source} holds no trainer state; it was saved without a MixedPrecision")
        trainer.load_state_dict(payload["trainer"])
    if restore_rng:
        torch.set_rng_state(payload["rng"])
    return payload
