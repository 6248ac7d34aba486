"""The two roles of a backend: `Backend` runs ops (what conformance measures); `TrainingBackend` also trains."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

import torch

from mpx.errors import OpError, PolicyError
from mpx.formats import FORMATS, FP32, Format, Overflow, Subnormals
from mpx.formats import format as lookup_format
from mpx.ops.spec import OpSpec, Pass
from mpx.policy import Policy, gemm_output_format
from mpx.policy import policy as lookup_policy

if TYPE_CHECKING:
    from mpx.training.state_formats import StateFormats

SupportStatus = Literal["native", "upcast", "fallback", "decomposed", "unsupported"]
Shapes = tuple[tuple[int, ...], ...]
Tensors = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Support:
    """How a backend runs one (op, format, pass): natively, upcast, on a fallback device, decomposed, or not at all."""

    status: SupportStatus
    reason: str = ""

    @property
    def runs(self) -> bool:
        return self.status != "unsupported"


class Backend:
    """A place that runs mpx ops.

    A subclass sets `name` and implements `_run`; `run` checks every call once (types, arity, storage
    dtypes, support) before `_run` sees it, so backends never repeat that validation. `support` has a
    working default (the op's own format list) that a backend narrows with what its device lacks.
    """

    name: ClassVar[str] = ""
    device: str = "cpu"
    overflow: Overflow = "inf"
    subnormals: Subnormals = "keep"
    formats: tuple[Format, ...] = FORMATS

    @property
    def _checked_calls(self) -> dict[tuple, OpSpec]:
        """Call signatures that run() has validated (created on first use: subclasses need not call __init__)."""
        checked = self.__dict__.get("_checked")
        if checked is None:
            checked = self.__dict__["_checked"] = {}
        return checked

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "run" in vars(cls):
            warnings.warn(
                f"{cls.__qualname__} overrides Backend.run; override _run instead (run validates, then calls _run)",
                DeprecationWarning,
                stacklevel=2,
            )

    def support(self, op: OpSpec, fmt: Format, pass_: Pass = "forward", shapes: Shapes | None = None) -> Support:
        """Whether and how this backend runs `op` in `fmt` on inputs of `shapes` (None: any shapes)."""
        if fmt not in self.formats:
            return Support("unsupported", f"{self.name} has no {fmt.name}")
        if pass_ == "backward" and not op.has_backward:
            return Support("unsupported", f"{op.name} has no backward pass")
        if not op.supports_format(fmt):
            return Support("unsupported", f"{op.name} is not defined in {fmt.name}")
        return Support("native")

    def require(self, op: OpSpec, fmt: Format, pass_: Pass = "forward", shapes: Shapes | None = None) -> Support:
        """support(), raising OpError with its reason when the case does not run here."""
        support = self.support(op, fmt, pass_, shapes)
        if not support.runs:
            raise OpError(f"{self.name} backend cannot run {op.name} {pass_} in {fmt.name}: {support.reason}")
        return support

    @final
    def run(
        self,
        op: OpSpec | str,
        fmt: Format | str,
        inputs: Tensors,
        pass_: Pass = "forward",
        grad_outputs: Tensors | None = None,
    ) -> Tensors:
        """Run `op` in `fmt` on CPU tensors in their storage dtypes (see OpSpec.to_storage).

        forward: the op's outputs, in op.output_formats(fmt). backward: the gradients of the op's
        differentiable args, given `grad_outputs` (one per output, in the output format).
        """
        if op.__class__ is not OpSpec:
            op = _as_op(op)
        if fmt.__class__ is not Format:
            fmt = lookup_format(fmt)
        try:  # what makes two calls the same to validation: op, format, pass, each tensor's shape and dtype
            key = (id(op), id(fmt), pass_, *[(t.shape, t.dtype) for t in inputs])
            if grad_outputs is not None:
                key += (*[(g.shape, g.dtype) for g in grad_outputs],)
        except (AttributeError, TypeError):  # not tensors: the full check says what is wrong
            key = None
        checked = self._checked_calls
        if key is None or key not in checked:
            self._check_call(op, fmt, pass_, inputs, grad_outputs)
            checked[key] = op  # holds the op, so its id in the key is never reused
        return self._run(op, fmt, inputs, pass_, grad_outputs)

    def _run(self, op: OpSpec, fmt: Format, inputs: Tensors, pass_: Pass, grad_outputs: Tensors | None) -> Tensors:
        """The backend's own execution of a call that `run` has already checked."""
        raise OpError(f"backend {self.name!r} does not run ops: its class must implement _run")

    def _check_call(self, op: OpSpec, fmt: Format, pass_: Pass, inputs: Tensors, grad_outputs: Tensors | None) -> None:
        if pass_ not in ("forward", "backward"):
            raise OpError(f"pass must be 'forward' or 'backward', not {pass_!r}")
        if len(inputs) != op.arity:
            names = ", ".join(a.name for a in op.args)
            raise OpError(f"{op.name} takes {op.arity} inputs ({names}), got {len(inputs)}")
        for arg, tensor in zip(op.args, inputs, strict=True):
            if not isinstance(tensor, torch.Tensor):
                raise OpError(f"{op.name} input {arg.name!r} must be a torch.Tensor, not {type(tensor).__name__}")
        self.require(op, fmt, pass_, tuple(tuple(t.shape) for t in inputs))
        for arg, tensor in zip(op.args, inputs, strict=True):
            _check_dtype(f"{op.name} input {arg.name!r}", tensor, arg.storage_dtype(fmt))
        if pass_ == "backward":
            formats = op.output_formats(fmt)
            if grad_outputs is None or len(grad_outputs) != len(formats):
                raise OpError(f"{op.name} backward needs one gradient per output ({len(formats)})")
            for index, (grad, out_fmt) in enumerate(zip(grad_outputs, formats, strict=True)):
                _check_dtype(f"{op.name} gradient of output {index}", grad, out_fmt.torch_dtype)

    def describe(self) -> dict[str, Any]:
        """Facts for reports: device and numerics semantics."""
        return {"name": self.name, "device": self.device, "overflow": self.overflow, "subnormals": self.subnormals}


class TrainingBackend(Backend):
    """A backend that also trains torch models: the training protocol `MixedPrecision` calls.

    autocast, unscale_and_check_, masked_step and cast_back are the whole protocol; the conformance cases of
    the precision ops (unscale, nonfinite_check, sgd/adam_master_update, cast_back) call the same methods
    (`_run_protocol_op`), so what is certified is what trains. The defaults are plain torch on `self.device`;
    a backend overrides only what its device does differently.
    """

    def check_policy(self, policy: Policy) -> None:
        """Raise PolicyError if this backend cannot train with `policy`."""
        if policy.compute.is_fp8 or policy.backward.is_fp8:
            raise PolicyError(f"backend {self.name!r} has no fp8 autocast; use fp16-mixed or bf16-mixed")

    def prepare_model(self, model: torch.nn.Module, policy: Policy) -> torch.nn.Module:
        """Make `model` run on this backend (e.g. compile it for the device); returns it. Default: unchanged."""
        return model

    def placement(self) -> list[dict[str, Any]]:
        """Where the models this backend prepared really run: one plain dict per compiled graph (default: none)."""
        return []

    @contextlib.contextmanager
    def autocast(self, policy: Policy | str) -> Iterator[None]:
        """Run the model code inside in the policy's compute format (torch.autocast on this device)."""
        policy = lookup_policy(policy)
        self.check_policy(policy)
        if policy.compute == FP32:
            yield
            return
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=gemm_output_format(policy.compute).torch_dtype):
            yield

    def saturation_limit(self, fmt: Format) -> float | None:
        """The magnitude at which `fmt` values count as overflowed here: its max where overflow saturates."""
        return fmt.max if self.overflow == "saturate" else None

    def unscale_and_check_(
        self,
        grads: Sequence[torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None = None,
    ) -> torch.Tensor:
        """Multiply fp32 `grads` in place by `inv_scale`; set `found_inf` to 1.0 on inf/NaN (or saturation)."""
        from mpx.training.overflow import unscale_and_check_

        return unscale_and_check_(grads, found_inf, inv_scale, saturation_limit)

    def fused_unscale_and_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: Mapping[torch.Tensor, torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None,
        state_formats: StateFormats | None,
    ) -> bool:
        """unscale_and_check_ of `grads` and then the masked_step it decides, as one call, where a backend fuses
        them (torch's fused optimizers take grad_scale and found_inf so); False: nothing done, the caller runs
        the two. Called only when nothing reads the unscaled gradients in between."""
        return False

    def masked_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: Mapping[torch.Tensor, torch.Tensor],
        skip: torch.Tensor,
        state_formats: StateFormats | None = None,
    ) -> None:
        """Step `optimizer` with `grads` (keyed by the tensors it updates) unless the 0-d bool `skip` is set."""
        from mpx.training.optimizer_step import masked_step
        from mpx.training.state_formats import FP32_STATE

        masked_step(optimizer, dict(grads), skip, state_formats or FP32_STATE)

    @torch.no_grad()
    def cast_back(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Round each fp32 master into its model parameter (nearest-even; overflow -> inf)."""
        for param, master in pairs:
            if master is not param:
                param.copy_(master)

    def _run_protocol_op(self, op: OpSpec, fmt: Format, values: Tensors) -> Tensors | None:
        """A precision op computed by this backend's protocol methods (None: the op is not one of them)."""
        from mpx.training.protocol_ops import run_protocol_op

        return run_protocol_op(self, op, fmt, values)


def _as_op(op: object) -> OpSpec:
    """An OpSpec given by itself or by name."""
    if isinstance(op, OpSpec):
        return op
    from mpx.ops.registry import get_op

    return get_op(op)


def _check_dtype(what: str, tensor: object, dtype: torch.dtype) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise OpError(f"{what} must be a torch.Tensor, not {type(tensor).__name__}")
    if tensor.dtype != dtype:
        raise OpError(f"{what} must be stored as {dtype}, got {tensor.dtype}; store inputs with OpSpec.to_storage")
