"""The tensors a sharded checkpoint loads into, shaped like the live objects and checked against what was saved.

Every key, global shape and dtype is checked before DCP reads a byte, so a checkpoint that does not fit
changes nothing. A target is a DTensor where the live tensor is one (DCP reads this rank's shard of it),
a plain tensor elsewhere: that is how a checkpoint of 2 ranks loads on 1 and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mpx.errors import CheckpointError
from mpx.training import rng as rng_state

from .fsdp import is_dtensor


@dataclass
class LoadTargets:
    """Targets by role; `flat` is the dict DCP fills (the same tensors)."""

    model: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    masters: list[torch.Tensor] = field(default_factory=list)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    flat: dict[str, torch.Tensor] = field(default_factory=dict)


def _describe(size: Any, dtype: torch.dtype) -> str:
    return f"{tuple(size)} {str(dtype).removeprefix('torch.')}"


def _fits(key: str, entry: Any, live: torch.Tensor, exact_dtype: bool = True) -> None:
    saved_dtype = entry.properties.dtype
    dtype_ok = saved_dtype == live.dtype if exact_dtype else saved_dtype.is_floating_point == live.is_floating_point()
    if tuple(entry.size) != tuple(live.shape) or not dtype_ok:
        raise CheckpointError(
            f"checkpoint {key!r} is {_describe(entry.size, saved_dtype)}, but the live tensor is "
            f"{_describe(live.shape, live.dtype)}: is the checkpoint another model's or another optimizer's?"
        )


def _like(live: torch.Tensor, entry: Any) -> torch.Tensor:
    """An empty tensor to load `entry` into: sharded like `live` when its global shape matches."""
    dtype = entry.properties.dtype
    if tuple(entry.size) == tuple(live.shape):
        return torch.empty_like(live.detach(), dtype=dtype)
    device = live._local_tensor.device if is_dtensor(live) else live.device
    return torch.empty(tuple(entry.size), dtype=dtype, device=device)


def _model_targets(entries: dict[str, Any], model: torch.nn.Module, targets: LoadTargets) -> None:
    live = model.state_dict()
    saved = {key.removeprefix("model.") for key in entries if key.startswith("model.")}
    missing, unexpected = sorted(set(live) - saved), sorted(saved - set(live))
    if missing or unexpected:
        problem = f"lacks {missing[0]!r}" if missing else f"has {unexpected[0]!r}, which the model has not"
        raise CheckpointError(f"the checkpoint's model state {problem}; is it another model's?")
    for key, tensor in live.items():
        _fits(f"model.{key}", entries[f"model.{key}"], tensor)
        targets.model[key] = targets.flat[f"model.{key}"] = torch.empty_like(tensor.detach())


def _trainer_targets(entries: dict[str, Any], trainer: Any, targets: LoadTargets) -> None:
    masters = trainer.master_weights.masters
    saved_masters = sum(1 for key in entries if key.startswith("masters."))
    if saved_masters != len(masters):
        raise CheckpointError(
            f"the checkpoint holds {saved_masters} fp32 master weights, this trainer keeps {len(masters)}: "
            "was it saved under another policy?"
        )
    for index, master in enumerate(masters):
        _fits(f"masters.{index}", entries[f"masters.{index}"], master)
        targets.masters.append(torch.empty_like(master.detach()))
        targets.flat[f"masters.{index}"] = targets.masters[-1]
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    for key, entry in entries.items():
        if not key.startswith("optimizer."):
            continue
        _, index_text, name = key.split(".", 2)
        index = int(index_text)
        if index >= len(params):
            raise CheckpointError(f"checkpoint {key!r}: the optimizer has only {len(params)} parameters")
        param = params[index]
        if name != "step" and tuple(entry.size) == tuple(param.shape):
            _fits(key, entry, param, exact_dtype=False)
        target = _like(param, entry) if name != "step" else torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
        targets.optimizer.setdefault(index, {})[name] = targets.flat[key] = target


def load_targets(entries: dict[str, Any], model: torch.nn.Module, trainer: Any, rank: int | None) -> LoadTargets:
    """Targets for the model, the trainer (when given) and this rank's RNG (rank None: leave the RNGs)."""
    targets = LoadTargets()
    _model_targets(entries, model, targets)
    if trainer is not None:
        _trainer_targets(entries, trainer, targets)
    if rank is not None:
        prefix = f"rng.{rank}."
        for key, entry in entries.items():
            if key.startswith(prefix):
                target = torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
                targets.rng[key.removeprefix(prefix)] = targets.flat[key] = target
        if targets.rng:
            rng_state.check(targets.rng)  # shapes and dtypes: the values are not read yet
    return targets
