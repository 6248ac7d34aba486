"""The Backend base class: what every backend implements, with defaults it may keep."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from .errors import BackendUnavailableError, OpError
from .formats import FORMATS, Format, Overflow, Subnormals
from .ops.spec import OpSpec, Pass
from .policy import Policy

SupportStatus = Literal["native", "upcast", "fallback", "decomposed", "unsupported"]


@dataclass(frozen=True)
class Support:
    """How a backend runs one (op, format, pass): natively, upcast, on a fallback device, decomposed, or not at all."""

    status: SupportStatus
    reason: str = ""

    @property
    def runs(self) -> bool:
        return self.status != "unsupported"


class Backend:
    """A place that runs mpx ops and trains models.

    Subclasses set `name` and implement `run`; the rest has working defaults.
    """

    name: ClassVar[str] = ""
    device: str = "cpu"
    overflow: Overflow = "inf"
    subnormals: Subnormals = "keep"
    formats: tuple[Format, ...] = FORMATS

    def support(self, op: OpSpec, fmt: Format, pass_: Pass = "forward") -> Support:
        """Whether and how this backend runs `op` in `fmt`; the default trusts the op's own format list."""
        if fmt not in self.formats:
            return Support("unsupported", f"{self.name} has no {fmt.name}")
        if pass_ == "backward" and not op.has_backward:
            return Support("unsupported", f"{op.name} has no backward pass")
        if not op.supports_format(fmt):
            return Support("unsupported", f"{op.name} is not defined in {fmt.name}")
        return Support("native")

    def require(self, op: OpSpec, fmt: Format, pass_: Pass = "forward") -> Support:
        """support(), raising OpError with its reason when the case does not run here (for `run` to call first)."""
        support = self.support(op, fmt, pass_)
        if not support.runs:
            raise OpError(f"{self.name} backend cannot run {op.name} {pass_} in {fmt.name}: {support.reason}")
        return support

    def run(
        self,
        op: OpSpec,
        fmt: Format,
        inputs: tuple[torch.Tensor, ...],
        pass_: Pass = "forward",
        grad_outputs: tuple[torch.Tensor, ...] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Run `op` in `fmt` on CPU tensors in their storage dtypes (see OpSpec.to_storage).

        forward: the op's outputs, in op.output_formats(fmt). backward: the gradients of the op's
        differentiable args, given `grad_outputs` (one per output, in the output format).
        """
        raise OpError(f"backend {self.name!r} does not run ops")

    @contextlib.contextmanager
    def autocast(self, policy: Policy) -> Iterator[None]:
        """Run the model code inside in the policy's compute format."""
        raise BackendUnavailableError(f"backend {self.name!r} does not train torch models; use 'cpu' or 'cuda'")
        yield

    def describe(self) -> dict[str, Any]:
        """Facts for reports: device and numerics semantics."""
        return {"name": self.name, "device": self.device, "overflow": self.overflow, "subnormals": self.subnormals}
