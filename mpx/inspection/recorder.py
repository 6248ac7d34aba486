"""Hooks that hand a model's tensors to the on-device statistics: activations, weights and gradients per module.

Forward hooks keep references to a recorded step's inputs and outputs; the weights and gradients join them,
and all are measured in one batch when the step ends (MixedPrecision.step(), or the end of backward when
inspecting a plain loop), or earlier when an in-place module is about to overwrite one. Nothing here reads a
device value: the statistics stay in `Buffers` until a report asks for them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from mpx.formats import Format
from mpx.inspection.buffers import Buffers
from mpx.inspection.stats import Buckets, overflow_threshold
from mpx.training import optimizer_step

LARGE = 1 << 22  # elements: a tensor this big is measured on its own, not copied into a batch

KINDS = ("input", "output", "weight", "grad")


@dataclass(frozen=True)
class Segment:
    """One measured tensor stream: a module (qualified name), a kind of tensor and, for weights/grads, a parameter."""

    module: str
    kind: str
    parameter: str = ""


def _floats(value: Any) -> list[torch.Tensor]:
    """The distinct floating-point tensors in a (nested) hook argument."""
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
        self._weights: list[tuple[int, torch.nn.Parameter]] = []
        self._grad_ids: dict[int, tuple[int, torch.nn.Parameter]] = {}  # id(parameter) -> its grad segment
        self._watched = watched_modules(model)  # armed and disarmed around recorded steps: walked once
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
        self._pending: dict[int, list[torch.Tensor]] = {}
        self._grads: dict[int, torch.Tensor] = {}  # standalone: id(parameter) -> its .grad, this backward
        self._order: list[int] = []
        self._layout: tuple[int, ...] = ()
        self._plan_pairs: Any = None  # the (parameter, target) pairs _plan was made from
        self._plan: list[tuple[int, torch.Tensor]] = []
        self._unit = torch.ones((), device=self.device)  # the loss scale of a plain loop
        self._in_backward = False
        self._handles: list[Any] = []
        self._armed: list[Any] = []
        self._order_hooks: list[Any] = []
        self._install(model)

    def _segment(self, module: str, kind: str, parameter: str = "") -> int:
        self.segments.append(Segment(module, kind, parameter))
        return len(self.segments) - 1

    def _install(self, model: torch.nn.Module) -> None:
        """Standalone: every hook stays on. Under MixedPrecision the hooks are on only for recorded steps (the
        trainer hands over gradients and ends steps itself), so a step in between costs next to nothing."""
        if not self.trainer:
            self._handles.append(model.register_forward_hook(self._on_model_forward))
        self._arm()

    def _arm(self) -> None:
        if not self._armed:
            if self.trainer:  # one process-wide hook for a recorded step: one registration, not one per module
                self._armed.append(_process_wide_hook(self))
            else:
                self._armed += [module.register_forward_hook(self._on_forward) for _, module in self._watched]
            self._armed += [module.register_forward_pre_hook(self._before_inplace) for module in self._inplace]
        # the backward order (for a skipped step's culprit) is noted on every 16th recorded step under a trainer
        if not self._order_hooks and (not self.trainer or len(self.recorded_steps) % 16 == 0):
            for _, param in self._grad_ids.values():
                if param.requires_grad:
                    self._order_hooks.append(param.register_post_accumulate_grad_hook(self._on_grad))

    def _disarm(self, order_hooks: bool = True) -> None:
        for handle in self._armed + (self._order_hooks if order_hooks else []):
            handle.remove()
        self._armed = []
        if order_hooks:
            self._order_hooks = []

    def remove(self) -> None:
        """Take every hook off the model (the statistics stay)."""
        self._disarm()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def recording(self) -> bool:
        return self.step % self.every == 0

    def _on_forward(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if self.step % self.every == 0:
            seg_in, seg_out = self._module_ids[id(module)]
            self._pending.setdefault(seg_in, []).extend(_floats(args))
            self._pending.setdefault(seg_out, []).extend(_floats(output))

    def _on_any_forward(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if id(module) in self._module_ids:  # any module of the process calls it while a recorded step runs
            self._on_forward(module, args, output)

    def _before_inplace(self, module: torch.nn.Module, args: tuple) -> None:
        if self._pending:  # the module is about to overwrite a tensor waiting to be measured
            self.flush()

    def _on_model_forward(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        if not torch.is_grad_enabled():  # an inference pass is a step
            self._add_weights()
            self.end_step(self._unit, None)

    def _add_weights(self) -> None:
        if self.recording:
            for seg, param in self._weights:
                self._pending[seg] = [param]

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
            for handle in self._order_hooks:
                handle.remove()
            self._order_hooks = []
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
        recording = self.recording
        on_host = found_inf is not None and found_inf.device.type in optimizer_step.HOST_DEVICES
        clean = on_host and not float(found_inf)  # nothing for a culprit search to find in this step
        if clean and not recording:
            return
        if self._plan_pairs is not pairs:  # a trainer passes the same pairs every step: resolved once
            self._plan_pairs = pairs
            self._plan = [(self._grad_ids[id(p)][0], t) for p, t in pairs if id(p) in self._grad_ids]
            self._layout = tuple(seg for seg, _ in self._plan)  # one tuple for every step that has all of them
        chosen = [(seg, grads[t]) for seg, t in self._plan if t in grads]
        if not chosen:
            return
        if not clean:
            layout = self._layout if len(chosen) == len(self._plan) else tuple(seg for seg, _ in chosen)
            self.buffers.record_norms(self.step, [g for _, g in chosen], layout)
        if recording:
            for seg, grad in chosen:
                self._pending[seg] = [grad]
            self._add_weights()
            self.flush()  # before the optimizer changes the weights

    def end_step(self, scale: torch.Tensor, skipped: torch.Tensor | None) -> None:
        """Close the step: measure what waits, record the scale and skip flag, count the step."""
        if self._pending:
            self.flush()
        self.buffers.end_step(scale, skipped)
        self.step += 1
        if self.trainer and self.recording:
            self._arm()
        elif self.trainer and (self._armed or self._order_hooks):
            self._disarm()

    def flush(self) -> None:
        """Measure every tensor waiting, in one batch (very large tensors on their own)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        if not self.recorded_steps or self.recorded_steps[-1] != self.step:
            self.recorded_steps.append(self.step)
        row = len(self.recorded_steps) - 1
        batch: list[tuple[int, torch.Tensor]] = []
        for seg, tensors in pending.items():
            for tensor in tensors:
                if tensor.numel() >= LARGE:  # measured on its own: no copy of it into the batch
                    self.buffers.add([(seg, tensor)], row)
                else:
                    batch.append((seg, tensor))
        if batch:
            self.buffers.add(batch, row)


def _process_wide_hook(recorder: Recorder) -> Any:
    """A forward hook on every module of the process that hands the recorder's modules to it. It holds the
    recorder weakly and goes with it: a trainer dropped between the arming and its recorded step leaks
    neither the hook nor the model."""
    reference = weakref.ref(recorder)

    def hook(module: torch.nn.Module, args: tuple, output: Any) -> None:
        alive = reference()
        if alive is not None:
            alive._on_any_forward(module, args, output)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    weakref.finalize(recorder, handle.remove)
    return handle


def nonfinite_culprit(norms: list[float], layout: tuple[int, ...], order: list[int]) -> int | None:
    """The grad segment, first in backward `order`, whose norm is not finite (None: all finite)."""
    bad = {seg for seg, norm in zip(layout, norms, strict=False) if not math.isfinite(norm)}
    ranked = [seg for seg in order if seg in bad] + sorted(bad - set(order))
    return ranked[0] if ranked else None
