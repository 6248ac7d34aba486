"""mpx.MixedPrecision: autocast, scaled backward, device-side overflow check and a masked optimizer step."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from mpx.distributed.fsdp import check_sharded_policy, in_process_group, local_tensors, overflow_group, sharding_mesh
from mpx.errors import MasterWeightError, OptimizerError, TrainingInputError
from mpx.formats import FP32
from mpx.plugins.backend import Backend
from mpx.policy import Policy
from mpx.policy import policy as make_policy
from mpx.training.backend_choice import check_policy, training_backend
from mpx.training.call_order import CallOrder
from mpx.training.keep_fp32 import ModuleSpec, install_fp32_regions, kept_parameters, resolve_keep_fp32
from mpx.training.loss_scaling import LossScaler, make_scaler
from mpx.training.master_weights import MasterWeights
from mpx.training.model_dtypes import apply_params_format, default_loss_scale
from mpx.training.optimizer_step import has_own_update
from mpx.training.state_formats import FP32_STATE, StateFormats
from mpx.training.state_validation import check_trainer_state

logger = logging.getLogger("mpx")


@dataclass(frozen=True)
class StepResult:
    """What step() did, as device tensors: reading `was_skipped` or the scale is the only host sync."""

    skipped: torch.Tensor  # 0-d bool: the update was skipped (overflow somewhere, on any rank)
    scale: torch.Tensor  # the loss scale this step used

    @property
    def was_skipped(self) -> bool:
        """Python bool (reads the flag back to the host)."""
        return bool(self.skipped)


class MixedPrecision:
    """Mixed-precision training of `model` with `optimizer` on a backend.

    loss_scale: 'dynamic' | 'static' | 'none' | a number | a LossScaler | None (what the real gradient dtypes
    need: dynamic for fp16 parameters or fp16/fp8 compute, none for bf16/fp32). fp16/bf16 policies cast the
    model's parameters; a .half() model under a params=fp32 policy keeps fp16 parameters with fp32 masters
    and dynamic scaling, with a logged warning.
    keep_fp32: module names or types that run in fp32 with fp32 parameters, outside autocast.
    master_weights: keep fp32 copies of fp16/bf16 parameters.
    state_formats: storage formats of gradients and optimizer state (mpx.LEAN_ADAM is the 12 bytes/param recipe).
    The optimizer is changed in place: its param groups hold the masters.
    inspect: record per-module numerics (True, or mpx.inspect's keyword arguments) of the forward run inside
    autocast(); the report is `mp.inspection`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        backend: str | Backend = "cpu",
        policy: str | Policy = "bf16-mixed",
        loss_scale: Any = None,
        *,
        master_weights: bool = True,
        state_formats: StateFormats = FP32_STATE,
        process_group: Any = None,
        keep_fp32: Iterable[ModuleSpec] = (),
        inspect: bool | Mapping[str, Any] = False,
    ) -> None:
        self.backend = training_backend(backend)
        self.policy = make_policy(policy)
        MasterWeights.validate(model, optimizer)
        check_policy(self.backend, self.policy)
        kept_modules = resolve_keep_fp32(model, keep_fp32)
        explicit = None if loss_scale is None else make_scaler(loss_scale, "none", self.backend.device)
        low_params = self.policy.params != FP32 or any(
            p.dtype != torch.float32 for g in optimizer.param_groups for p in g["params"]
        )
        if low_params and not master_weights and not has_own_update(optimizer):
            raise OptimizerError(
                f"{type(optimizer).__name__} would step fp16/bf16 parameters with low-precision gradients, a path "
                "that needs fp32: keep master_weights=True, or use SGD/Adam/AdamW, which mpx updates in fp32"
            )
        self.model, self.optimizer, self.state_formats = model, optimizer, state_formats
        self.mesh = sharding_mesh(model)  # FSDP2: fp32 sharded parameters are the masters; found_inf spans the mesh
        if self.mesh is not None:
            check_sharded_policy(self.policy, model)
        self.process_group = overflow_group(self.mesh) if self.mesh and process_group is None else process_group
        apply_params_format(model, self.policy, kept_parameters(kept_modules))
        default = default_loss_scale(self.policy, model)
        if explicit is None and default == "none" and self.policy.is_mixed:
            logger.info("mpx: %s trains without loss scaling (bf16 has fp32's range)", self.policy)
        self.scaler: LossScaler = explicit if explicit is not None else make_scaler(None, default, self.backend.device)
        self.fp32_regions = install_fp32_regions(kept_modules, torch.device(self.backend.device).type)
        self.master_weights = MasterWeights(optimizer, enabled=master_weights)
        self.master_weights.install()
        # (parameter, fp32 master) pairs that need a cast back after each step: none when every parameter is fp32
        self._cast_pairs = [(param, master) for param, master in self.master_weights.pairs if master is not param]
        self._grad_buffers: dict[torch.nn.Parameter, torch.Tensor | None] = {}
        if state_formats.grads != FP32:
            for param, target in self.master_weights.pairs:
                if target is param and param.dtype == torch.float32:
                    self._grad_buffers[param] = None
                    param.register_post_accumulate_grad_hook(self._move_grad_to_buffer)
        # where each step's gradient comes from: (parameter, tensor the optimizer updates, kept in a buffer?)
        self._gradient_sources = [(p, t, p in self._grad_buffers) for p, t in self.master_weights.pairs]
        stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self._model_only = [p for p in model.parameters() if id(p) not in stepped]  # grads optimizer.zero_grad misses
        self.saturation_limit = self.backend.saturation_limit(self.policy.backward)
        self.skipped_steps = torch.zeros((), dtype=torch.int64, device=self.backend.device)
        self._unscaled: dict[torch.Tensor, torch.Tensor] | None = None
        self._found_inf: torch.Tensor | None = None
        self._last: StepResult | None = None
        self._order = CallOrder()  # READY -> SCALED -> UNSCALED -> step(): raises on an order that breaks the math
        self.inspection = None
        if inspect:  # imported here: mpx.inspection imports mpx.training
            from mpx.inspection import attach

            self.inspection = attach(model, **({} if inspect is True else dict(inspect)))
        self._grad_norm: torch.Tensor | None = None
        self._track_grad_norm = False  # metrics() turns it on
        self.model = self.backend.prepare_model(model, self.policy)  # e.g. compiled for the backend's device

    def _move_grad_to_buffer(self, param: torch.Tensor) -> None:
        buffer = self._grad_buffers[param]
        if buffer is None:
            self._grad_buffers[param] = param.grad.to(self.state_formats.grads.torch_dtype)
        else:
            buffer.add_(param.grad)
        param.grad = None

    def placement(self) -> list[dict[str, Any]]:
        """Where the backend runs the model: one plain dict per compiled graph ([] where it runs as torch code)."""
        return self.backend.placement()

    def autocast(self) -> AbstractContextManager[None]:
        """Run the forward pass in the policy's compute format on this backend (and record it, with `inspect`)."""
        context = self.backend.autocast(self.policy)
        return context if self.inspection is None else self.inspection.recorder.capture(context)

    def backward(self, loss: torch.Tensor) -> None:
        """(loss * scale).backward(); call once per micro-batch to accumulate gradients, all before unscale_()."""
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TrainingInputError("backward needs the scalar loss tensor (reduce it with .mean() or .sum() first)")
        if not loss.requires_grad:
            raise TrainingInputError("the loss does not require grad: compute it from the model's output")
        self._order.before_backward()
        self.scaler.scale(loss.float()).backward()
        self._order.after_backward()

    def _sources(self) -> dict[torch.Tensor, torch.Tensor]:
        """The accumulated gradients (parameter's .grad or its buffer) keyed by the tensor the optimizer updates."""
        sources = {}
        for param, target, buffered in self._gradient_sources:
            grad = self._grad_buffers[param] if buffered else param.grad
            if grad is not None:
                sources[target] = grad
        return sources

    def unscale_(self) -> torch.Tensor:
        """Divide this step's gradients by the scale (once) and return found_inf (device, 1.0 on overflow).

        Raises TrainingInputError with no gradients to unscale (no backward() since the last step()).
        """
        return self._unscale(fuse_step=False)

    def _unscale(self, fuse_step: bool) -> torch.Tensor:
        """unscale_(); with `fuse_step`, the backend may run the masked step in the same call (self._stepped)."""
        self._order.before_unscale(lambda: self._sources().values())
        if self._unscaled is None or self._found_inf is None:
            sources = self._sources()
            self._step_sources = list(sources.values())  # what after_step() records as spent
            grads = sources  # fp32 gradients are unscaled in place; low-precision ones as fp32 copies
            if any(grad.dtype != torch.float32 for grad in self._step_sources):
                grads = {target: grad.float() for target, grad in sources.items()}
            scale = self.scaler.loss_scale
            found_inf = torch.zeros(1, dtype=torch.float32, device=scale.device)
            inv_scale = torch.reciprocal(scale)
            local = local_tensors(grads.values())  # FSDP2: each rank checks its own gradient shards
            args = (found_inf, inv_scale, self.saturation_limit)
            fused = self.backend.fused_unscale_and_step
            self._stepped = fuse_step and fused(self.optimizer, grads, *args, self.state_formats)
            if not self._stepped:
                self.backend.unscale_and_check_(local, *args)
            if self.inspection is not None:
                self.inspection.recorder.record_gradients(self.master_weights.pairs, grads, found_inf)
            if in_process_group():
                torch.distributed.all_reduce(found_inf, op=torch.distributed.ReduceOp.MAX, group=self.process_group)
            self._unscaled, self._found_inf = grads, found_inf
            self._order.after_unscale()
        return self._found_inf

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
        """Clip the unscaled gradients to `max_norm`; returns the total norm (a device tensor)."""
        self.unscale_()
        assert self._unscaled is not None
        grads = list(self._unscaled.values())
        total = torch.nn.utils.get_total_norm(grads, norm_type)
        coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        if grads:
            torch._foreach_mul_(grads, coefficient.to(grads[0].device))
        return total

    def step(self) -> StepResult:
        """Unscale, check overflow, masked optimizer update, cast back, update the scale: no host sync.

        Raises TrainingInputError when there is nothing to step: no gradient, or only those the last step() used.
        """
        fuse = self._unscaled is None and self.inspection is None and not in_process_group()  # none reads them between
        self._stepped = False
        found_inf = self._unscale(fuse_step=fuse)
        assert self._unscaled is not None
        skip = found_inf.reshape(()) > 0
        scale = self.scaler.loss_scale.clone()
        if not self._stepped:
            self.backend.masked_step(self.optimizer, self._unscaled, skip, self.state_formats)
        if self._cast_pairs:
            self.backend.cast_back(self._cast_pairs)
        self.scaler.update(found_inf)
        self.skipped_steps += skip
        if self.inspection is not None:
            self.inspection.recorder.end_step(scale, skip)
        if self._track_grad_norm and self._unscaled:
            self._grad_norm = torch.stack(torch._foreach_norm(list(self._unscaled.values()))).norm()
        for _, master in self._cast_pairs:
            master.grad = None
        self._unscaled, self._found_inf = None, None
        self._order.after_step(self._step_sources)
        self._last = StepResult(skip, scale)
        return self._last

    def metrics(self) -> dict[str, torch.Tensor]:
        """Device tensors for a logger: loss_scale, skipped_steps, skipped, grad_norm (mpx.inspection.metrics)."""
        from mpx.inspection.metrics import trainer_metrics

        return trainer_metrics(self)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the optimizer's gradients and those of the model's other parameters (as model.zero_grad would)."""
        self.optimizer.zero_grad(set_to_none=set_to_none)
        for param in self._model_only:
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.detach_() if param.grad.grad_fn is not None else param.grad.requires_grad_(False)
                param.grad.zero_()
        for param in self._grad_buffers:
            self._grad_buffers[param] = None
        self._unscaled, self._found_inf = None, None
        self._order.reset()

    def scheduler_step(self, scheduler: Any) -> bool:
        """Advance an LR scheduler unless the last step was skipped.

        Schedulers count steps on the host, so this reads the skip flag (one host sync, outside step());
        returns whether it advanced.
        """
        if self._last is None or not self._last.was_skipped:
            if self._last is not None:  # mpx stepped the optimizer itself: tell torch's "step before scheduler" check
                self.optimizer._opt_called = True
            scheduler.step()
            return True
        return False

    def memory_tensors(self) -> Iterator[torch.Tensor]:
        """Tensors this trainer owns beyond the model and optimizer: masters and gradient buffers."""
        yield from self.master_weights.masters
        yield from (b for b in self._grad_buffers.values() if b is not None)

    def state_dict(self) -> dict[str, Any]:
        """Scaler, masters, optimizer and the skipped-steps counter (reading the scaler syncs)."""
        return {
            "policy": str(self.policy),
            "scaler": self.scaler.state_dict(),
            "masters": [m.detach().clone() for m in self.master_weights.masters],
            "optimizer": self.optimizer.state_dict(),
            "skipped_steps": self.skipped_steps.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() saved; checks every tensor first, so a mismatch changes nothing."""
        check_trainer_state(self, state, MasterWeightError)
        masters = self.master_weights.masters
        self.scaler.load_state_dict(state["scaler"])
        self.optimizer.load_state_dict(state["optimizer"])
        with torch.no_grad():
            for master, saved in zip(masters, state["masters"], strict=True):
                master.copy_(saved)
            for params_state in self.optimizer.state.values():
                for key, value in params_state.items():
                    if key in self.state_formats.state and isinstance(value, torch.Tensor):
                        params_state[key] = value.to(self.state_formats.for_key(key).torch_dtype)
        self.backend.cast_back(self.master_weights.pairs)
        self.skipped_steps.copy_(state["skipped_steps"])
