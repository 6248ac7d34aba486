"""A recorded step's forward under MixedPrecision: the watched modules' calls noted without hooks.

A module with a forward hook leaves torch's fast call path (several microseconds a call on a CPU, as much as
the module itself in a small model). Instead, only while the trainer's autocast() of a recorded step is open,
each watched module's `forward` is shadowed by an instance attribute that calls it and notes
(segments, args, output). The shadows go when the context closes, however it closes, so outside it the model
is exactly as it was (deepcopy, pickling and torch.compile's guards see no trace of them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import torch

_ABSENT = object()


def _shadow(
    module: torch.nn.Module,
    previous: Any,
    segments: tuple[int, int],
    calls: list[Any],
    before: Callable[[], None] | None,
) -> Callable[..., Any]:
    """A module's recording forward: the forward set on the instance before (`previous`), or its class's, read
    at each call (a class patched later is still followed)."""

    def recorded_forward(*args: Any, **kwargs: Any) -> Any:
        if before is not None:  # an in-place module: what waits to be measured is measured before it changes
            before()
        if previous is _ABSENT:
            output = type(module).forward(module, *args, **kwargs)
        else:
            output = previous(*args, **kwargs)
        calls.append((segments, args, output))
        return output

    return recorded_forward


class ForwardCapture:
    """Installs and removes the shadows of `watched` ((module, (input segment, output segment), in place)):
    each appends its calls to `calls` (the list itself: whoever reads it empties it in place). A shadow is made
    once per module and what it shadows; nested installs count, and only the outermost one acts."""

    def __init__(
        self,
        watched: Sequence[tuple[torch.nn.Module, tuple[int, int], bool]],
        calls: list[Any],
        before_inplace: Callable[[], None],
    ) -> None:
        self._watched, self._calls, self._before_inplace = watched, calls, before_inplace
        self._made: dict[int, tuple[Any, Callable[..., Any]]] = {}  # id(module) -> (what it shadows, shadow)
        self._installed: list[tuple[torch.nn.Module, Any, Callable[..., Any]]] = []
        self._depth = 0

    def install(self) -> None:
        self._depth += 1
        if self._depth > 1:
            return
        for module, segments, inplace in self._watched:
            previous = module.__dict__.get("forward", _ABSENT)
            made = self._made.get(id(module))
            if made is None or made[0] is not previous:
                before = self._before_inplace if inplace else None
                made = self._made[id(module)] = (previous, _shadow(module, previous, segments, self._calls, before))
            module.__dict__["forward"] = made[1]
            self._installed.append((module, previous, made[1]))

    def remove(self) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        for module, previous, shadow in self._installed:
            if module.__dict__.get("forward") is shadow:  # not replaced meanwhile by someone else
                if previous is _ABSENT:
                    del module.__dict__["forward"]
                else:
                    module.__dict__["forward"] = previous
        self._installed.clear()


class Captured(AbstractContextManager[Any]):
    """`context` (the trainer's autocast()) with `capture` installed inside it, removed on the way out."""

    def __init__(self, context: AbstractContextManager[Any], capture: ForwardCapture) -> None:
        self._context, self._capture = context, capture

    def __enter__(self) -> Any:
        value = self._context.__enter__()
        try:
            self._capture.install()
        except BaseException:
            self._capture.remove()
            self._context.__exit__(None, None, None)
            raise
        return value

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            self._capture.remove()
        finally:
            exit_value = self._context.__exit__(kind, error, tb)
        return exit_value
