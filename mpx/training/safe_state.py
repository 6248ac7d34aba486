"""What a checkpoint may hold -- values `torch.load(weights_only=True)` reads back -- and how one is read.

Extras are checked at save time, naming the offending key and type, so no file saves that cannot load; a file
is read with weights_only=True unless the caller trusts it (unpickling arbitrary objects runs their code).
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mpx.errors import CheckpointError

_LEAVES = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size)
_HINT = (
    "checkpoint extras must load with torch.load(weights_only=True): tensors, numbers, strings, bytes, None and "
    "dicts, lists or tuples of them; convert it (np.ndarray -> torch.from_numpy, objects -> their state as a dict). "
    "mpx already saves the torch, CUDA, numpy and Python RNG states"
)


def _unsafe(value: Any, where: str) -> tuple[str, str] | None:
    """(path, type name) of the first value under `value` that weights_only loading refuses, or None."""
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
            return where, f"{type(value).__module__}.{type(value).__qualname__}"
        return None
    if type(value) in _LEAVES:
        return None
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _LEAVES:
                return f"{where} key {key!r}", f"{type(key).__module__}.{type(key).__qualname__}"
            found = _unsafe(item, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if type(value) in (list, tuple, set):
        for index, item in enumerate(value):
            found = _unsafe(item, f"{where}[{index}]")
            if found:
                return found
        return None
    return where, f"{type(value).__module__}.{type(value).__qualname__}"


def check_extras(extra: Mapping[str, Any]) -> None:
    """Raise CheckpointError naming the first extra (and where inside it) that would not load safely."""
    for key, value in extra.items():
        found = _unsafe(value, repr(key))
        if found is not None:
            where, kind = found
            raise CheckpointError(f"cannot save extra {where}: a {kind} would not load safely; {_HINT}")


def read_payload(source: Path, trusted: bool) -> Any:
    """torch.load with weights_only unless `trusted`; a refused object or a damaged file is a CheckpointError."""
    try:
        return torch.load(source, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as error:
        if trusted:
            raise CheckpointError(f"{source} is damaged or not a torch file: {error}") from error
        reason = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), str(error)[:200])
        raise CheckpointError(
            f"{source} holds pickled objects that weights_only loading refuses ({reason}); mpx never unpickles "
            "objects unless told to: if you trust the file, pass trusted=True"
        ) from None
    except Exception as error:  # a truncated or foreign file
        raise CheckpointError(f"{source} is not a readable mpx checkpoint: {error}") from error
