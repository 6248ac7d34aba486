"""The random number generators a run draws from (torch CPU and CUDA, numpy, Python) as a flat dict of tensors.

Tensors only, so a checkpoint holding them loads with `torch.load(weights_only=True)` and goes through
torch.distributed.checkpoint without pickled objects.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import numpy as np
import torch

from mpx.errors import CheckpointError


def capture() -> dict[str, torch.Tensor]:
    """This process's RNG states: 'torch', 'cuda.<i>' per initialized GPU, 'numpy.*', 'python.*'."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda.{index}"] = cuda_state
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    if kind != "MT19937":
        raise CheckpointError(f"numpy's global RNG is {kind}, not MT19937; mpx saves only MT19937 states")
    state["numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64).copy())
    state["numpy.position"] = torch.tensor([position, has_gauss], dtype=torch.int64)
    state["numpy.gauss"] = torch.tensor(gauss, dtype=torch.float64)
    version, words, gauss_next = random.getstate()
    state["python.words"] = torch.tensor([version, *words], dtype=torch.int64)
    state["python.gauss"] = torch.tensor(math.nan if gauss_next is None else gauss_next, dtype=torch.float64)
    return state


def check(state: object) -> None:
    """Raise CheckpointError unless `state` is a capture() (or a bare torch CPU state of older checkpoints)."""
    if isinstance(state, torch.Tensor):
        if state.dtype != torch.uint8 or state.shape != torch.get_rng_state().shape:
            raise CheckpointError(
                f"rng: expected torch's CPU RNG state, got a {state.dtype} tensor {tuple(state.shape)}"
            )
        return
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("rng: expected a dict of RNG state tensors (mpx.training.rng.capture())")
    live = capture()
    for key, value in state.items():
        if key.startswith("cuda.") and key not in live:
            continue  # a GPU this process does not use: restore() skips it
        if key not in live or value.shape != live[key].shape or value.dtype != live[key].dtype:
            raise CheckpointError(f"rng: {key!r} does not fit this process's RNG state ({key} {tuple(value.shape)})")


def restore(state: Mapping[str, torch.Tensor] | torch.Tensor) -> None:
    """Set the RNGs from capture()'s dict; states of GPUs this process does not see are left out."""
    if isinstance(state, torch.Tensor):  # checkpoints written before mpx saved every generator
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            if f"cuda.{index}" in state:
                torch.cuda.set_rng_state(state[f"cuda.{index}"], index)
    if "numpy.keys" in state:
        position, has_gauss = (int(v) for v in state["numpy.position"])
        keys = state["numpy.keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, position, has_gauss, float(state["numpy.gauss"])))
    if "python.words" in state:
        version, *words = (int(v) for v in state["python.words"])
        gauss = float(state["python.gauss"])
        random.setstate((version, tuple(words), None if math.isnan(gauss) else gauss))
