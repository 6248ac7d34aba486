"""A recorded step's forward under MixedPrecision: the watched modules' calls noted without forward hooks.

A module with a forward hook leaves torch's fast call path (several microseconds a call on a CPU, as much as
the module itself in a small model), and wrapping its class's forward instead makes CPython drop what it
specialised for the class at every recorded step. So while the trainer's autocast() of a recorded step is
open, each watched module's `forward` is shadowed by an instance attribute (a Shadow) that calls what it
shadows and notes (segments, inputs, output). It is taken off when the context closes, however it closes;
one kept past that (a stored `module.forward`) passes straight through, and so do a nested call of the same
module (super().forward, recursion) and a call without gradients (an evaluation pass: not the step's training
forward). A model copied or pickled while a Shadow is on gets the plain forward.
"""

from __future__ import annotations

import copy
import inspect
import types
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

LIMIT = 512  # forward calls waiting before they are measured early (memory stays bounded)
_ABSENT = object()
_grad_enabled = torch.is_grad_enabled


def floats_in(value: Any) -> list[torch.Tensor]:
    """The distinct floating-point tensors in a (nested) forward argument or output."""
    if type(value) is tuple and len(value) == 1:  # the usual forward argument: one tensor
        value = value[0]
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() and value.numel() else []
    flat = isinstance(value, (tuple, list)) and all(v is None or isinstance(v, torch.Tensor) for v in value)
    seen: dict[int, torch.Tensor] = {}
    for leaf in value if flat else tree_leaves(value):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.numel():
            seen.setdefault(id(leaf), leaf)
    return list(seen.values())


def versions(inputs: Any, output: Any) -> tuple[int, int]:
    """The version counters of a call's input and output when each is one tensor (-1: not one, or an inference
    tensor): a tensor changed in place before it is measured is then left out, not measured as changed."""
    if type(inputs) is tuple and len(inputs) == 1:
        inputs = inputs[0]
    try:
        return (
            inputs._version if type(inputs) is torch.Tensor else -1,
            output._version if type(output) is torch.Tensor else -1,
        )
    except RuntimeError:  # an inference tensor keeps no version counter
        return -1, -1


class Shadow:
    """A watched module's forward while a recorded step's forward runs."""

    __slots__ = ("module", "previous", "segments", "calls", "before", "flush", "active", "running")

    def __init__(self, module: torch.nn.Module, previous: Any, segments: tuple[int, int], calls: list[Any],
                 before: Callable[[], None] | None, flush: Callable[[], None]) -> None:  # fmt: skip
        self.module, self.previous, self.segments, self.calls = module, previous, segments, calls
        self.before, self.flush, self.active, self.running = before, flush, False, False

    def _target(self) -> Callable[..., Any]:
        if self.previous is _ABSENT:  # the class's, read at each call (a class patched later is followed)
            return types.MethodType(type(self.module).forward, self.module)
        return self.previous

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, previous = self.module, self.previous
        if not self.active or self.running or not _grad_enabled():
            return type(module).forward(module, *args, **kwargs) if previous is _ABSENT else previous(*args, **kwargs)
        if self.before is not None:  # an in-place module: what waits to be measured is measured before it changes
            self.before()
        self.running = True
        try:  # one frame, no helper calls: this runs for every watched module of a recorded step
            output = type(module).forward(module, *args, **kwargs) if previous is _ABSENT else previous(*args, **kwargs)
        finally:
            self.running = False
        inputs = (args, kwargs) if kwargs else args
        self.calls.append((self.segments, inputs, output, versions(inputs, output)))
        if len(self.calls) >= LIMIT:  # many forwards in one recorded step: measured now
            self.flush()
        return output

    @property
    def __signature__(self) -> inspect.Signature:  # what inspect.signature(module.forward) gives without it
        return inspect.signature(self._target())

    @property
    def __self__(self) -> torch.nn.Module:
        return self.module

    def __reduce__(self) -> tuple[Any, ...]:  # pickled with its module: the copy gets the plain forward
        return getattr, (self.module, "forward")

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        module = memo.get(id(self.module))
        if module is None:  # the Shadow copied on its own, not with its module
            return self
        previous = _unshadowed(self.previous)
        if previous is _ABSENT:
            return types.MethodType(type(module).forward, module)
        return copy.deepcopy(previous, memo)


def _unshadowed(forward: Any) -> Any:
    """What an instance's forward attribute is under any Shadows left on it (a capture closed out of order)."""
    while isinstance(forward, Shadow) and not forward.active:
        forward = forward.previous
    return forward


class ForwardCapture:
    """Puts Shadows on `watched` ((module, (input segment, output segment), in place)) and takes them off; each
    appends its calls to `calls` (the list itself: whoever reads it empties it in place). Nested starts count;
    only the outermost acts. `flush` measures what waits."""

    def __init__(
        self,
        watched: Sequence[tuple[torch.nn.Module, tuple[int, int], bool]],
        calls: list[Any],
        flush: Callable[[], None],
        before_inplace: Callable[[], None],
    ) -> None:
        self._watched, self._calls, self._flush, self._before_inplace = watched, calls, flush, before_inplace
        self._made: dict[int, Shadow] = {}  # id(module) -> its Shadow, made again when what it shadows changes
        self._on: list[Shadow] = []
        self.depth = 0

    def install(self) -> None:
        self.depth += 1
        if self.depth == 1:
            self.resume()

    def remove(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.pause()

    def resume(self) -> None:
        """Note calls from now on (an open capture across steps: resumed for a recorded step)."""
        if self._on:
            return
        for module, segments, inplace in self._watched:
            previous = _unshadowed(module.__dict__.get("forward", _ABSENT))
            shadow = self._made.get(id(module))
            if shadow is None or shadow.previous is not previous:
                before = self._before_inplace if inplace else None
                shadow = Shadow(module, previous, segments, self._calls, before, self._flush)
                self._made[id(module)] = shadow
            shadow.active = True
            module.__dict__["forward"] = shadow
            self._on.append(shadow)

    def pause(self) -> None:
        """Take the Shadows off (one still referenced somewhere passes through from now on)."""
        for shadow in self._on:
            shadow.active = False
            attributes = shadow.module.__dict__
            if attributes.get("forward") is shadow:  # not replaced meanwhile by someone else
                previous = _unshadowed(shadow.previous)  # under it, a capture closed out of order
                if previous is _ABSENT:
                    del attributes["forward"]
                else:
                    attributes["forward"] = previous
        self._on.clear()


class Captured(AbstractContextManager[Any]):
    """`context` (the trainer's autocast()) with `capture` on inside it. A forward that raises leaves nothing
    waiting to be measured: the step's noted calls are dropped."""

    def __init__(self, context: AbstractContextManager[Any], capture: ForwardCapture, calls: list[Any]) -> None:
        self._context, self._capture, self._calls = context, capture, calls

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
            if kind is not None:
                self._calls.clear()
        finally:
            exit_value = self._context.__exit__(kind, error, tb)
        return exit_value
