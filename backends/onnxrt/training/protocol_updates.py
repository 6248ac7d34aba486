"""Which optimizer steps the EP's master-update graphs compute, and how one group's step is fed and written back.

The graphs are torch's single-tensor SGD and AdamW (sgd_master_update / adam_master_update): they take
SGD without dampening or Nesterov, AdamW, and Adam without weight decay (the same update), on fp32 masters
with fp32 state in host memory. The optimizer's state keeps torch's keys and types (`step` a 0-d fp32
tensor, `exp_avg`, `exp_avg_sq`, `momentum_buffer`), so its state_dict is torch's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from mpx.formats import FP32
from mpx.training.state_formats import StateFormats

from ..graph.precision import adam_scalars, sgd_scalars
from .protocol_flat import Flats, flatten, scatter

Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
_PLAIN = {"maximize": False, "differentiable": False}
_MOMENTS = {"sgd": ("momentum_buffer",), "adamw": ("exp_avg", "exp_avg_sq")}


def _fits(group: dict[str, Any], kind: str, decoupled: bool) -> bool:
    if any(group.get(key, value) != value for key, value in _PLAIN.items()):
        return False
    if kind == "sgd":
        return not group.get("dampening") and not group.get("nesterov")
    decoupled = decoupled or group.get("decoupled_weight_decay", False)
    return not group.get("amsgrad") and (decoupled or not group.get("weight_decay"))


def update_kind(
    optimizer: torch.optim.Optimizer, grads: Mapping[torch.Tensor, torch.Tensor], formats: StateFormats
) -> str | None:
    """'sgd' or 'adamw' when the EP graphs compute this optimizer's step exactly as configured, else None."""
    kind = {torch.optim.SGD: "sgd", torch.optim.Adam: "adamw", torch.optim.AdamW: "adamw"}.get(type(optimizer))
    if kind is None or any(formats.for_key(key) != FP32 for key in _MOMENTS[kind]):
        return None
    decoupled = isinstance(optimizer, torch.optim.AdamW)  # before torch 2.6 its groups have no such key
    if not all(_fits(group, kind, decoupled) for group in optimizer.param_groups):
        return None
    for target, grad in grads.items():
        if target.dtype != torch.float32 or grad.dtype != torch.float32 or "cpu" != target.device.type:
            return None
        if grad.shape != target.shape or grad.device.type != "cpu":
            return None
    return kind


def _state(state: dict, key: str, like: torch.Tensor) -> torch.Tensor:
    """state[key], created as torch creates it (zeros; a 0-d fp32 step) before the first step."""
    if state.get(key) is None:
        state[key] = torch.zeros((), dtype=torch.float32) if key == "step" else torch.zeros_like(like)
    return state[key]


def _scalars(kind: str, group: dict[str, Any], step: float) -> dict[str, np.ndarray]:
    """The group's fp32 scalars for step number `step` (doubles rounded once to fp32, as conformance's constants)."""
    if kind == "sgd":
        values = sgd_scalars(float(group["lr"]), float(group["momentum"]), float(group["weight_decay"]))
    else:
        beta1, beta2 = (float(b) for b in group["betas"])
        values = adam_scalars(float(group["lr"]), beta1, beta2, float(group["eps"]), float(group["weight_decay"]), step)
    return {name: np.asarray(value, dtype=np.float32) for name, value in values.items()}


@torch.no_grad()
def write_updates(
    kind: str,
    run: Run,
    group: dict[str, Any],
    states: dict,
    params: list[torch.Tensor],
    grads: Mapping[torch.Tensor, torch.Tensor],
    skip: torch.Tensor,
    found_inf: np.ndarray,
) -> None:
    """One masked step of `params` (one param group) through the EP graph `run`, copied back in place."""
    keep_buffer = kind == "adamw" or bool(group["momentum"])
    feed: dict[str, np.ndarray] = {"found_inf": found_inf}
    targets: list[torch.Tensor] = []
    steps: list[torch.Tensor] = []
    scalars_of_step: dict[float, dict[str, np.ndarray]] = {}
    for i, param in enumerate(params):
        state = states[param]
        step = 0.0
        if kind == "adamw":  # state keys in torch's order: step, exp_avg, exp_avg_sq
            steps.append(_state(state, "step", param))
            step = float(steps[-1]) + 1  # a host tensor: a memory read, not a device sync
        moments = [_state(state, key, param) if keep_buffer else torch.zeros_like(param) for key in _MOMENTS[kind]]
        if step not in scalars_of_step:
            scalars_of_step[step] = _scalars(kind, group, step)
        feed.update({f"{name}{i}": value for name, value in scalars_of_step[step].items()})
        feed[f"master{i}"] = param.detach().contiguous().numpy()
        feed[f"grad{i}"] = grads[param].detach().contiguous().numpy()
        for key, moment in zip(_MOMENTS[kind], moments, strict=True):
            feed[f"{key}{i}"] = moment.contiguous().numpy()
        targets += [param, *moments] if keep_buffer else [param, None]
    results = run(feed)
    for target, value in zip(targets, results, strict=True):
        if target is not None:
            target.copy_(torch.from_numpy(value))
    for step_count in steps:  # torch counts a step only when it updates: +1.0 or +0.0, no branch
        step_count.add_((~skip).reshape(()).to(step_count.dtype))


def write_flat_adamw(
    run: Run,
    group: dict[str, Any],
    params: list[torch.Tensor],
    feed: dict[str, np.ndarray],
    flats: Flats,
    unscaled: list[torch.Tensor],
) -> float:
    """One masked AdamW step of a group laid end to end through the EP graph `run` (adam_graph, or
    check_adamw_graph: then the grads it unscales first, into `unscaled`, and the found_inf it computes).
    `params`: the masters, laid end to end for the graph and updated in place; `feed` holds grad0 and
    found_inf; `flats` the exp_avg, exp_avg_sq and step buffers (updated in place).
    Returns the step's found_inf."""
    steps, moments = flats["step"].flat, (flats["exp_avg"].flat, flats["exp_avg_sq"].flat)
    feed.update({f"{name}0": value for name, value in _scalars("adamw", group, float(steps[0]) + 1).items()})
    feed.update(master0=flatten(params).numpy(), exp_avg0=moments[0].numpy(), exp_avg_sq0=moments[1].numpy())
    results = run(feed)
    if unscaled:
        scatter(torch.from_numpy(results.pop(0)), unscaled)
    checked = len(results) == 4  # check_adamw_graph: the found_inf it computed comes first
    found = float(results.pop(0).reshape(-1)[0]) if checked else float(feed["found_inf"])
    new_master, *new_moments = results
    scatter(torch.from_numpy(new_master), params)
    for moment, value in zip(moments, new_moments, strict=True):
        moment.copy_(torch.from_numpy(value))
    steps.add_(1.0 - found)  # torch counts a step only when it updates (found_inf: host values, no sync)
    return found
