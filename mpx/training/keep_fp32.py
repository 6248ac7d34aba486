"""Per-module overrides: modules that run in fp32, with fp32 parameters, whatever the policy computes in."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch.utils._pytree import tree_map

from mpx.errors import TrainingInputError

ModuleSpec = str | type[torch.nn.Module]


def resolve_keep_fp32(model: torch.nn.Module, specs: Iterable[ModuleSpec]) -> list[torch.nn.Module]:
    """The modules `specs` name (dotted names as in model.named_modules(), or module types), in model order."""
    named = dict(model.named_modules())
    chosen: dict[int, torch.nn.Module] = {}
    for spec in specs:
        if isinstance(spec, str):
            if spec not in named or not spec:
                close = difflib.get_close_matches(spec, [n for n in named if n], n=5, cutoff=0.5)
                hint = f"close matches: {', '.join(close)}" if close else "names are those of model.named_modules()"
                raise TrainingInputError(f"keep_fp32: {type(model).__name__} has no module {spec!r}; {hint}")
            chosen[id(named[spec])] = named[spec]
        elif isinstance(spec, type) and issubclass(spec, torch.nn.Module):
            matches = [m for m in named.values() if isinstance(m, spec)]
            if not matches:
                kinds = sorted({type(m).__name__ for m in named.values()})
                raise TrainingInputError(
                    f"keep_fp32: {type(model).__name__} has no {spec.__name__} module; its types: {', '.join(kinds)}"
                )
            chosen.update((id(m), m) for m in matches)
        else:
            raise TrainingInputError(
                f"keep_fp32 takes module names ('head') or module types (torch.nn.LayerNorm), not {spec!r}"
            )
    return [m for m in named.values() if id(m) in chosen]


def kept_parameters(modules: Iterable[torch.nn.Module]) -> set[int]:
    """ids of the parameters and buffers that live in `modules` (and their children)."""
    ids: set[int] = set()
    for module in modules:
        ids.update(id(t) for t in module.parameters())
        ids.update(id(t) for t in module.buffers())
    return ids


def _to_fp32(value: Any) -> Any:
    is_low = isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64
    return value.float() if is_low else value


class Fp32Region:
    """Forward hooks that run one module in an autocast-disabled fp32 region, on `device_type`."""

    def __init__(self, module: torch.nn.Module, device_type: str) -> None:
        self.device_type = device_type
        self.regions: list[AbstractContextManager[None]] = []
        self.handles = [
            module.register_forward_pre_hook(self._enter, with_kwargs=True),
            module.register_forward_hook(self._exit, always_call=True),
        ]

    def _enter(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        region = torch.autocast(self.device_type, enabled=False)
        region.__enter__()
        self.regions.append(region)
        return tree_map(_to_fp32, args), tree_map(_to_fp32, kwargs)

    def _exit(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if self.regions:
            self.regions.pop().__exit__(None, None, None)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def install_fp32_regions(modules: Iterable[torch.nn.Module], device_type: str) -> list[Fp32Region]:
    """An fp32 region around each module's forward (emulated autocast escapes it as torch.autocast does)."""
    return [Fp32Region(module, device_type) for module in modules]
