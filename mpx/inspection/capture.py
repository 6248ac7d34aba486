"""A recorded step's forward under MixedPrecision: the watched modules' calls noted without hooks.

A module with a forward hook leaves torch's fast call path (several microseconds a call on a CPU, as much as
the module itself in a small model). Instead, only while the trainer's autocast() of a recorded step is open,
each watched module's `forward` is shadowed by an instance attribute that calls it and notes
(segments, args, output). The shadows go when the context closes, however it closes, so outside it the model
is exactly as it was (deepcopy, pickling and torch.compile's guards see no trace of them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

_ABSENT = object()


def _shadow(
    module: torch.nn.Module, segments: tuple[int, int], calls: list[Any], before: Callable[[], None] | None
) -> Callable[..., Any]:
    forward = module.forward  # the class's (bound) or a forward someone set on the instance before us

    def recorded_forward(*args: Any, **kwargs: Any) -> Any:
        if before is not None:  # an in-place module: what waits to be measured is measured before it changes
            before()
        output = forward(*args, **kwargs)
        calls.append((segments, args, output))
        return output

    return recorded_forward


@contextmanager
def capturing(
    watched: Sequence[tuple[torch.nn.Module, tuple[int, int], bool]],
    calls: list[Any],
    before_inplace: Callable[[], None],
) -> Iterator[None]:
    """While open, each (module, (input segment, output segment), in place) of `watched` appends its forward
    calls to `calls` (the list itself: whoever reads it empties it in place)."""
    shadows = []
    try:
        for module, segments, inplace in watched:
            shadow = _shadow(module, segments, calls, before_inplace if inplace else None)
            shadows.append((module, module.__dict__.get("forward", _ABSENT), shadow))
            module.__dict__["forward"] = shadow
        yield
    finally:
        for module, previous, shadow in shadows:
            if module.__dict__.get("forward") is shadow:  # not replaced meanwhile by someone else
                if previous is _ABSENT:
                    del module.__dict__["forward"]
                else:
                    module.__dict__["forward"] = previous
