"""Which NVIDIA GPU the cuda backend runs on, and whether one can run here; cheap, creates no CUDA context.

The plugin asks `unavailable()` when mpx lists backends; the backend asks it again when built.
"""

from __future__ import annotations

import torch

from mpx.errors import BackendUnavailableError

BF16_CAPABILITY = (8, 0)  # Ampere and later: bf16 tensor cores


def unavailable(variant: str = "") -> str | None:
    """None when a CUDA GPU can run mpx here, else why not ('' or a GPU index as `variant`)."""
    if not torch.backends.cuda.is_built():
        return f"torch was built without CUDA (torch {torch.__version__})"
    count = torch.cuda.device_count()  # asks the driver; no context is created
    if count == 0:
        return "no NVIDIA GPU visible (torch.cuda.device_count() == 0)"
    if variant:
        if not variant.isdigit():
            return f"'cuda:{variant}' is not a GPU index; use cuda:0 .. cuda:{count - 1}"
        if int(variant) >= count:
            return f"cuda:{variant} does not exist: {count} GPU(s) visible (cuda:0 .. cuda:{count - 1})"
    return None


def device_index(device: str | int | torch.device) -> int | None:
    """The GPU index `device` names ('cuda:1', 1, torch.device), or None for the current GPU ('cuda')."""
    if isinstance(device, int):
        return device
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise BackendUnavailableError(f"device {device!r} is not a device name; use 'cuda' or 'cuda:1'") from None
    if parsed.type != "cuda":
        raise BackendUnavailableError(f"the cuda backend runs on CUDA devices, not {device!r}; use the 'cpu' backend")
    return parsed.index


def compute_capability_name(capability: tuple[int, int]) -> str:
    """(8, 9) -> 'sm_89'."""
    return f"sm_{capability[0]}{capability[1]}"
