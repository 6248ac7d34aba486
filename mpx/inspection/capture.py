"""A recorded step's forward under MixedPrecision: the watched modules' calls noted without forward hooks.

A module with a forward hook leaves torch's fast call path (several microseconds a call on a CPU, as much as
the module itself in a small model). Instead, while the trainer's autocast() of a recorded step is open, the
`forward` of each watched module's class is wrapped: a call on a watched instance notes (segments, inputs,
output) for the captures watching it; any other instance (another model, a copy or replica made meanwhile)
passes straight through, and so do a nested call of the same module (super().forward, recursion) and a call
without gradients (an evaluation pass inside the step: it is not the step's training forward). A class
is put back when the last capture using it closes, however it closes; a bound forward kept past that passes
through. A module with a forward set on the instance (accelerate's hooks), or whose class forward is not a
plain function (scripted modules), gets a forward hook instead.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import torch

_ABSENT = object()
# class -> [what its own __dict__ held under "forward" (or _ABSENT), the wrapper, captures using it]
_CLASSES: dict[type, list[Any]] = {}
# id(module) -> (segments, calls, before, flush) of each capture watching it; before: an in-place module's flush
_SINKS: dict[int, list[tuple[Any, list[Any], Callable[[], None] | None, Callable[[], None]]]] = {}
_RUNNING: set[int] = set()  # watched modules inside their forward now: a nested call is not noted again
_PATCHABLE: dict[type, bool] = {}


def versions(inputs: Any, output: Any) -> tuple[int, int]:
    """The version counters of a call's input and output when each is one tensor (-1: not one, or an inference
    tensor): a tensor changed in place before it is measured is then left out, not measured as changed."""
    return _version(inputs), _version(output)


def _version(value: Any) -> int:
    if type(value) is tuple and len(value) == 1:
        value = value[0]
    if type(value) is not torch.Tensor:
        return -1
    try:
        return value._version
    except RuntimeError:  # an inference tensor keeps no version counter
        return -1


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)  # inspect.signature(module.forward) still gives the class's
    def forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        key = id(self)
        sinks = _SINKS.get(key)
        if sinks is None or key in _RUNNING or not torch.is_grad_enabled():  # no_grad: an evaluation pass
            return original(self, *args, **kwargs)
        for _, _, before, _ in sinks:
            if before is not None:  # an in-place module: what waits to be measured is measured before it changes
                before()
        _RUNNING.add(key)
        try:
            output = original(self, *args, **kwargs)
        finally:
            _RUNNING.discard(key)
        inputs = (args, kwargs) if kwargs else args
        for segments, calls, _, flush in sinks:
            calls.append((segments, inputs, output, versions(inputs, output)))
            if len(calls) >= LIMIT:  # many forwards in one recorded step (an evaluation loop): measured now
                flush()
        return output

    forward.__mpx_original__ = original  # type: ignore[attr-defined]
    return forward


LIMIT = 512  # forward calls waiting before they are measured early (memory stays bounded)


def _patchable(module: torch.nn.Module) -> bool:
    cls = type(module)
    if cls not in _PATCHABLE:
        found = inspect.getattr_static(cls, "forward", None)
        _PATCHABLE[cls] = isinstance(found, types.FunctionType) and not isinstance(module, torch.jit.ScriptModule)
    return _PATCHABLE[cls] and "forward" not in module.__dict__


def _patch(cls: type) -> None:
    entry = _CLASSES.get(cls)
    if entry is None:
        original = cls.forward  # type: ignore[attr-defined]
        original = getattr(original, "__mpx_original__", original)  # a base class wrapped already: its own
        entry = _CLASSES[cls] = [cls.__dict__.get("forward", _ABSENT), _wrap(original), 0]
        type.__setattr__(cls, "forward", entry[1])
    entry[2] += 1


def _unpatch(cls: type) -> None:
    entry = _CLASSES[cls]
    entry[2] -= 1
    if entry[2] == 0:
        del _CLASSES[cls]
        if cls.__dict__.get("forward") is entry[1]:  # not replaced meanwhile by someone else
            if entry[0] is _ABSENT:
                type.__delattr__(cls, "forward")
            else:
                type.__setattr__(cls, "forward", entry[0])


class ForwardCapture:
    """Starts and stops noting the forward calls of `watched` ((module, (input segment, output segment), in
    place)) into `calls` (the list itself: whoever reads it empties it in place). Nested starts count; only
    the outermost acts. `flush` measures what waits."""

    def __init__(
        self,
        watched: Sequence[tuple[torch.nn.Module, tuple[int, int], bool]],
        calls: list[Any],
        flush: Callable[[], None],
        before_inplace: Callable[[], None],
    ) -> None:
        self._watched, self._calls, self._flush, self._before_inplace = watched, calls, flush, before_inplace
        self._hooks: list[Any] = []
        self._on = False
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
        self._on = True
        for module, segments, inplace in self._watched:
            before = self._before_inplace if inplace else None
            if _patchable(module):
                _SINKS.setdefault(id(module), []).append((segments, self._calls, before, self._flush))
                _patch(type(module))
            else:
                self._hooks.append(module.register_forward_hook(self._hook(segments)))
                if before is not None:
                    self._hooks.append(module.register_forward_pre_hook(lambda _m, _a, flush=before: flush()))

    def pause(self) -> None:
        """Stop noting calls; the classes go back once no capture uses them."""
        if not self._on:
            return
        self._on = False
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        for module, _, _ in self._watched:
            sinks = _SINKS.get(id(module))
            mine = [sink for sink in sinks or () if sink[1] is self._calls]
            if mine:
                sinks.remove(mine[0])
                if not sinks:
                    del _SINKS[id(module)]
                _unpatch(type(module))

    def _hook(self, segments: tuple[int, int]) -> Callable[..., None]:
        def noted(module: torch.nn.Module, args: tuple, output: Any) -> None:
            if torch.is_grad_enabled():
                self._calls.append((segments, args, output, versions(args, output)))

        return noted


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
