"""Hooks that hand a model's tensors to the on-device statistics: activations, weights and gradients per module.

Forward hooks (standalone) or the trainer's capture (capture.py) keep references to a recorded step's inputs
and outputs; the weights and gradients join them, and all are measured in one batch when the step ends
(MixedPrecision.step(), or the end of backward when inspecting a plain loop), or earlier when an in-place
module is about to overwrite one. Nothing here reads a device value: the statistics stay in `Buffers` until a
report asks for them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from mpx.formats import Format
from mpx.inspection.buffers import Buffers
from mpx.inspection.capture import Captured, ForwardCapture, floats_in, versions
from mpx.inspection.stats import Buckets, overflow_threshold
from mpx.training import optimizer_step

KINDS = ("input", "output", "weight", "grad")


@dataclass(frozen=True)
class Segment:
    """One measured tensor stream: a module (qualified name), a kind of tensor and, for weights/grads, a parameter."""

    module: str
    kind: str
    parameter: str = ""


def watched_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Leaf modules and modules with parameters of their own, as model.named_modules() names them."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if not any(True for _ in module.children()) or any(True for _ in module.parameters(recurse=False))
    ]


class Recorder:
    """The hooks and the per-step bookkeeping of one inspected model."""

    def __init__(self, model: torch.nn.Module, formats: Sequence[Format], every: int, trainer: bool) -> None:
        self.model, self.formats, self.every, self.trainer = model, tuple(formats), every, trainer
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.segments: list[Segment] = []
        self.module_types: dict[str, str] = {}
        self._module_ids: dict[int, tuple[int, int]] = {}
        self._weights: list[tuple[int, torch.Tensor]] = []
        self._grad_ids: dict[int, tuple[int, torch.nn.Parameter]] = {}  # id(parameter) -> its grad segment
        self._watched = watched_modules(model)
        self._inplace = [module for _, module in self._watched if getattr(module, "inplace", False)]
        for name, module in self._watched:
            self.module_types[name] = type(module).__name__
            self._module_ids[id(module)] = (self._segment(name, "input"), self._segment(name, "output"))
            for pname, param in module.named_parameters(recurse=False):
                if id(param) not in self._grad_ids:  # tied weights: the first owner keeps them
                    self._weights.append((self._segment(name, "weight", pname), param))
                    self._grad_ids[id(param)] = (self._segment(name, "grad", pname), param)
        self.buckets = Buckets([overflow_threshold(f) for f in self.formats])
        self.buffers = Buffers(len(self.segments), self.buckets, self.device)
        self.step, self.recorded_steps = 0, []
        self.backward_order: list[int] = []  # grad segments in the order the last backward produced them
        # waiting to be measured: forward calls ((input segment, output segment), inputs, output, their versions)
        # as noted (tensors picked out when measured), and (segment, tensor) entries of weights and gradients
        self._calls: list[tuple[tuple[int, int], Any, Any, tuple[int, int]]] = []
        self._entries: list[tuple[int, torch.Tensor]] = []
        self._grads: dict[int, torch.Tensor] = {}  # standalone: id(parameter) -> its .grad, this backward
        self._order: list[int] = []
        self._layout: tuple[int, ...] = ()  # the last gradient layout: steps with the same one share the tuple
        self._plan_pairs: Any = None  # the (parameter, target) pairs _plan was made from
        self._plan: dict[int, int] = {}  # id(target) -> its grad segment
        self._unit = torch.ones((), device=self.device)  # the loss scale of a plain loop
        self._in_backward = False
        self._flag_on_host: bool | None = None  # whether a step's overflow flag is in host memory
        plan = [(m, self._module_ids[id(m)], m in self._inplace) for _, m in self._watched]
        self._forward_capture = ForwardCapture(plan, self._calls, self.flush, self._flush_before_overwrite)
        self.closed = False
        self._captured_step = -1  # the last step whose autocast() was captured
        self._handles: list[Any] = []
        self._order_hooks: list[Any] = []  # emptied in place: a dropped recorder takes them off (finalize)
        weakref.finalize(self, _remove_all, self._order_hooks)
        self._install(model)

    def _segment(self, module: str, kind: str, parameter: str = "") -> int:
        self.segments.append(Segment(module, kind, parameter))
        return len(self.segments) - 1

    def _install(self, model: torch.nn.Module) -> None:
        """Standalone: every hook stays on. Under MixedPrecision nothing is on the model between recorded steps:
        the trainer hands over gradients and ends steps, and its autocast() captures a recorded forward."""
        if not self.trainer:
            self._handles.append(model.register_forward_hook(self._on_model_forward))
            self._handles += [module.register_forward_hook(self._on_forward) for _, module in self._watched]
            self._handles += [module.register_forward_pre_hook(self._before_inplace) for module in self._inplace]
        self._arm_order()

    def _arm_order(self) -> None:
        """Note the backward order (for a skipped step's culprit): always standalone, every 16th recorded step
        under a trainer (taken off again when its backward ends)."""
        if not self._order_hooks:
            for _, param in self._grad_ids.values():
                if param.requires_grad:
                    self._order_hooks.append(param.register_post_accumulate_grad_hook(_weakly(self, "_on_grad")))

    def _disarm_order(self) -> None:
        _remove_all(self._order_hooks)

    def remove(self) -> None:
        """Stop recording: every hook off the model, no capture (the statistics stay)."""
        self.closed = True
        self._disarm_order()
        while self._forward_capture.depth:
            self._forward_capture.remove()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def capture(self, context: AbstractContextManager[Any]) -> AbstractContextManager[Any]:
        """`context` (the trainer's autocast()), noting the watched modules' forward calls if this step is
        recorded (capture.py)."""
        if self.step % self.every or self.closed:
            return context
        self._captured_step = self.step
        return Captured(context, self._forward_capture, self._calls)

    @property
    def recording(self) -> bool:
        return self.step % self.every == 0

    def _on_forward(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if self.step % self.every == 0:  # the tensors are picked out when measured: one append per call here
            self._calls.append((self._module_ids[id(module)], args, output, versions(args, output)))

    def _before_inplace(self, module: torch.nn.Module, args: tuple) -> None:
        self._flush_before_overwrite()

    def _flush_before_overwrite(self) -> None:
        # an in-place module is about to overwrite a tensor waiting to be measured (inside a graph torch.compile
        # traces, nothing is measured: a tensor it overwrites is left out and named when measured)
        if (self._calls or self._entries) and not torch.compiler.is_compiling():
            self.flush()

    def _on_model_forward(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if not torch.is_grad_enabled():  # an inference pass is a step
            self._add_weights()
            self.end_step(self._unit, None)

    def _add_weights(self) -> None:
        if self.recording:
            self._entries += self._weights

    def _on_grad(self, param: torch.Tensor) -> None:
        if not self._in_backward:
            self._in_backward, self._order = True, []
            torch.autograd.Variable._execution_engine.queue_callback(self._on_backward_end)
        self._order.append(self._grad_ids[id(param)][0])
        if not self.trainer and param.grad is not None:
            self._grads[id(param)] = param.grad

    def _on_backward_end(self) -> None:
        self._in_backward, self.backward_order = False, self._order
        if self.trainer:
            self._disarm_order()
        else:
            grads, self._grads = self._grads, {}
            params = [self._grad_ids[i][1] for i in grads]
            self.record_gradients([(p, p) for p in params], dict(zip(params, grads.values(), strict=True)))
            self.end_step(self._unit, None)

    def record_gradients(
        self,
        pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
        grads: Mapping[torch.Tensor, torch.Tensor],
        found_inf: torch.Tensor | None = None,
    ) -> None:
        """This step's gradients (unscaled), keyed by the tensor the optimizer updates; `pairs`: (parameter, it).

        Every step keeps each gradient's norm (to name a skipped step's first non-finite one); recorded steps
        also measure them. Where the step's overflow flag `found_inf` is in host memory (a CPU device) reading
        it is a memory read, not a sync, and a step it clears keeps no norms.
        """
        recording = self.step % self.every == 0
        if self.closed:
            return
        if self._flag_on_host is None and found_inf is not None:  # the trainer's scaler: one device for life
            self._flag_on_host = found_inf.device.type in optimizer_step.HOST_DEVICES
        clean = found_inf is not None and self._flag_on_host and not found_inf.item()  # no culprit to find
        if clean and not recording:
            return
        if self._plan_pairs is not pairs:  # a trainer passes the same pairs every step: resolved once
            self._plan_pairs = pairs
            self._plan = {id(t): self._grad_ids[id(p)][0] for p, t in pairs if id(p) in self._grad_ids}
        plan = self._plan  # keyed by id(): a tensor's own hash is a Python call
        chosen = [(plan[id(t)], g) for t, g in grads.items() if id(t) in plan]
        if not chosen:
            return
        if not clean:
            layout = tuple(seg for seg, _ in chosen)
            if layout != self._layout:
                self._layout = layout
            self.buffers.record_norms(self.step, [g for _, g in chosen], self._layout)
        if recording:
            self._entries += chosen
            self._add_weights()
            self.flush()  # before the optimizer changes the weights

    def end_step(self, scale: torch.Tensor, skipped: torch.Tensor | None) -> None:
        """Close the step: measure what waits, record the scale and skip flag, count the step."""
        if self.closed:
            return
        if self._calls or self._entries:
            self.flush()
        if self.trainer and self.step % self.every == 0 and self._captured_step != self.step:
            if not self._forward_capture.depth:  # not silently: the report says its activations are missing
                self.buffers.unmeasured["a recorded step's forward (not run inside mp.autocast())"] += 1
        self.buffers.end_step(scale, skipped)
        self.step += 1
        recording = self.step % self.every == 0
        if self._forward_capture.depth:  # the step ended inside autocast(): the capture follows the steps
            if recording:
                self._forward_capture.resume()
            else:
                self._forward_capture.pause()
        if self.trainer and recording and len(self.recorded_steps) % 16 == 0:
            self._arm_order()
        elif self.trainer and self._order_hooks:
            self._disarm_order()

    def flush(self) -> None:
        """Measure every tensor waiting, in one batch."""
        if not (self._calls or self._entries):
            return
        calls, entries = self._calls[:], self._entries
        self._calls.clear()  # emptied in place: a capture appends to this very list
        self._entries = []
        if not self.recorded_steps or self.recorded_steps[-1] != self.step:
            self.recorded_steps.append(self.step)
        batch: list[tuple[int, torch.Tensor]] = []
        for (seg_in, seg_out), args, output, (v_in, v_out) in calls:  # call order: an output, the next input
            for segment, value, version in ((seg_in, args, v_in), (seg_out, output, v_out)):
                if type(value) is tuple and len(value) == 1:
                    value = value[0]
                if type(value) is not torch.Tensor:
                    batch += [(segment, tensor) for tensor in floats_in(value)]
                elif version < 0 or value._version == version:  # the usual one tensor, as the module left it
                    batch.append((segment, value))  # (Buffers.add leaves out non-float ones)
                else:
                    self._changed_in_place(segment)
        batch += entries
        self.buffers.add(batch, len(self.recorded_steps) - 1)

    def _changed_in_place(self, segment: int) -> None:
        where = self.segments[segment]
        reason = f"{where.module} {where.kind}: changed in place after the module ran (an op like `out += x`)"
        self.buffers.unmeasured[reason] += 1


def _remove_all(handles: list[Any]) -> None:
    for handle in handles:
        handle.remove()
    handles.clear()


def _weakly(recorder: Recorder, method: str) -> Any:
    """A hook calling `recorder.method` that does not keep the recorder alive (a dropped trainer goes at once)."""
    reference = weakref.ref(recorder)

    def hook(*args: Any) -> None:
        alive = reference()
        if alive is not None:
            getattr(alive, method)(*args)

    return hook


def nonfinite_culprit(norms: list[float], layout: tuple[int, ...], order: list[int]) -> int | None:
    """The grad segment, first in backward `order`, whose norm is not finite (None: all finite)."""
    bad = {seg for seg, norm in zip(layout, norms, strict=False) if not math.isfinite(norm)}
    ranked = [seg for seg in order if seg in bad] + sorted(bad - set(order))
    return ranked[0] if ranked else None
