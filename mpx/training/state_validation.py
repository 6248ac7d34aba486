"""Checks a saved state against the live model, optimizer, scaler and masters before anything is changed.

Each check raises `error` (an mpx error class) naming the first mismatch: the key, what the live object
expects and what the state holds. Nothing here changes any object.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mpx.errors import MpxError

# Per-parameter optimizer state keys of the optimizers whose kind can be told apart from their state.
_STATE_KEYS: dict[type, frozenset[str]] = {
    torch.optim.SGD: frozenset({"momentum_buffer"}),
    torch.optim.Adam: frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
    torch.optim.AdamW: frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}),
}
_REQUIRED_KEYS: dict[type, frozenset[str]] = {
    torch.optim.Adam: frozenset({"step", "exp_avg", "exp_avg_sq"}),
    torch.optim.AdamW: frozenset({"step", "exp_avg", "exp_avg_sq"}),
}
# Keys that hold one value per element of the parameter (whatever the optimizer).
_PARAM_SHAPED = frozenset(
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg", "acc_delta", "sum", "ax", "prev"}
)


@functools.cache
def _hyperparameters() -> frozenset[str]:
    """Names of torch.optim's hyperparameters: a saved group holding one the live optimizer lacks is another kind's.

    Keys that schedulers add to param groups (initial_lr, max_momentum, ...) are not among them.
    """
    names: set[str] = set()
    for value in vars(torch.optim).values():
        if isinstance(value, type) and issubclass(value, torch.optim.Optimizer):
            names |= set(inspect.signature(value.__init__).parameters) - {"self", "params", "defaults"}
    return frozenset(names)


def describe(value: Any) -> str:
    """'tensor (16, 8) float32', or the type name of anything else."""
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    return type(value).__name__


def check_tensor(
    name: str, value: Any, expected: torch.Tensor, error: type[MpxError], exact_dtype: bool = True
) -> None:
    """`value` must be a tensor of `expected`'s shape (and dtype, or float-ness when not `exact_dtype`)."""
    if not isinstance(value, torch.Tensor):
        raise error(f"{name}: expected {describe(expected)}, got {describe(value)}")
    same_kind = value.is_floating_point() == expected.is_floating_point() and not value.is_complex()
    dtype_ok = value.dtype == expected.dtype if exact_dtype else same_kind
    if value.shape != expected.shape or not dtype_ok:
        raise error(f"{name}: expected {describe(expected)}, got {describe(value)}")


def check_mapping(name: str, value: Any, error: type[MpxError]) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise error(f"{name}: expected a dict, got {describe(value)}")
    return value


def check_model_state(model: torch.nn.Module, state: Any, error: type[MpxError]) -> None:
    """Same keys, shapes and dtypes as model.state_dict() (a strict load that cannot fail half-way)."""
    state = check_mapping("model", state, error)
    live = model.state_dict()
    missing = [k for k in live if k not in state]
    if missing:
        raise error(f"model: the state lacks {missing[0]!r} ({describe(live[missing[0]])}); is it another model's?")
    unexpected = [k for k in state if k not in live]
    if unexpected:
        raise error(
            f"model: unexpected key {unexpected[0]!r} ({describe(state[unexpected[0]])}) not in {type(model).__name__}"
        )
    for key, expected in live.items():
        if isinstance(expected, torch.Tensor):
            check_tensor(f"model[{key!r}]", state[key], expected, error)


def _category(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, torch.Tensor)):
        return "number"
    if isinstance(value, (tuple, list)):
        return f"sequence of {len(value)}"
    return type(value).__name__


def _check_group(index: int, saved: Any, live: dict[str, Any], kind: str, error: type[MpxError]) -> list[Any]:
    saved = check_mapping(f"optimizer param_groups[{index}]", saved, error)
    params = saved.get("params")
    if not isinstance(params, list) or len(params) != len(live["params"]):
        got = len(params) if isinstance(params, list) else describe(params)
        raise error(f"optimizer param_groups[{index}]['params']: expected {len(live['params'])} parameters, got {got}")
    foreign = sorted((set(saved) - set(live)) & _hyperparameters())
    if foreign:
        raise error(
            f"optimizer param_groups[{index}] has {', '.join(map(repr, foreign))}, which {kind} does not take: "
            f"the state is another optimizer's; build a {kind} like the one that saved it"
        )
    for key, value in saved.items():
        if key in ("params", "param_names") or key not in live or None in (value, live[key]):
            continue
        if _category(value) != _category(live[key]):
            raise error(
                f"optimizer param_groups[{index}][{key!r}]: expected {_category(live[key])}, got {_category(value)}"
            )
    return params


def _check_param_state(
    name: str,
    saved: Any,
    live: Mapping[str, Any],
    param: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    error: type[MpxError],
) -> None:
    saved = check_mapping(name, saved, error)
    kind = type(optimizer).__name__
    allowed = _STATE_KEYS.get(type(optimizer))
    if allowed is not None:
        foreign = sorted(set(saved) - allowed)
        if foreign:
            raise error(f"{name} holds {foreign[0]!r}, which {kind} does not keep: the state is another optimizer's")
    required = set(live) if live else _REQUIRED_KEYS.get(type(optimizer), frozenset())
    missing = sorted(k for k in required if k not in saved) if saved else []
    if missing:
        raise error(f"{name} lacks {missing[0]!r}, which {kind} needs")
    for key, value in saved.items():
        if value is None or (key == "step" and isinstance(value, (int, float)) and not isinstance(value, bool)):
            continue
        if not isinstance(value, torch.Tensor):
            raise error(f"{name}[{key!r}]: expected a tensor, got {describe(value)}")
        reference = live.get(key)
        if key == "step":
            if value.numel() != 1 or value.is_complex():
                raise error(f"{name}['step']: expected a 1-element counter, got {describe(value)}")
        elif key in _PARAM_SHAPED or isinstance(reference, torch.Tensor) and reference.shape == param.shape:
            check_tensor(f"{name}[{key!r}]", value, param, error, exact_dtype=False)
        elif isinstance(reference, torch.Tensor):
            check_tensor(f"{name}[{key!r}]", value, reference, error, exact_dtype=False)


def check_optimizer_state(optimizer: torch.optim.Optimizer, state: Any, error: type[MpxError]) -> None:
    """Param-group structure, optimizer kind and every per-parameter state tensor against `optimizer`."""
    state = check_mapping("optimizer", state, error)
    groups, saved_state = state.get("param_groups"), state.get("state")
    if not isinstance(groups, Sequence) or not isinstance(saved_state, Mapping):
        raise error("optimizer: not an optimizer state_dict (needs 'state' and 'param_groups')")
    live_groups = optimizer.param_groups
    if len(groups) != len(live_groups):
        raise error(f"optimizer param_groups: expected {len(live_groups)} groups, got {len(groups)}")
    kind = type(optimizer).__name__
    id_map: dict[Any, torch.Tensor] = {}
    for index, (saved, live) in enumerate(zip(groups, live_groups, strict=True)):
        for saved_id, param in zip(_check_group(index, saved, live, kind, error), live["params"], strict=True):
            if saved_id in id_map:
                raise error(f"optimizer param_groups[{index}]: parameter id {saved_id!r} appears twice")
            id_map[saved_id] = param
    for saved_id, param_state in saved_state.items():
        if saved_id not in id_map:
            raise error(f"optimizer state[{saved_id!r}]: no parameter of the optimizer has that id")
        param = id_map[saved_id]
        live = optimizer.state.get(param, {})
        _check_param_state(f"optimizer state[{saved_id!r}]", param_state, live, param, optimizer, error)


def check_trainer_state(trainer: Any, state: Any, error: type[MpxError]) -> None:
    """A MixedPrecision.state_dict() that fits `trainer`: scaler, masters, optimizer, skipped-steps counter."""
    state = check_mapping("trainer state", state, error)
    missing = [k for k in ("scaler", "masters", "optimizer", "skipped_steps") if k not in state]
    if missing:
        raise error(f"not a MixedPrecision state_dict: lacks {', '.join(missing)}")
    masters, saved = trainer.master_weights.masters, state["masters"]
    if not isinstance(saved, Sequence) or len(saved) != len(masters):
        got = len(saved) if isinstance(saved, Sequence) else describe(saved)
        raise error(
            f"masters: expected {len(masters)} fp32 master weights (one per low-precision parameter), got {got}; "
            "the saved master weights do not match this model's low-precision parameters"
        )
    for index, (master, value) in enumerate(zip(masters, saved, strict=True)):
        check_tensor(f"masters[{index}]", value, master, error)
    check_tensor("skipped_steps", state["skipped_steps"], trainer.skipped_steps, error)
    try:
        trainer.scaler.check_state_dict(state["scaler"])
    except MpxError as scaler_error:
        raise error(f"scaler: {scaler_error}") from scaler_error
    check_optimizer_state(trainer.optimizer, state["optimizer"], error)
