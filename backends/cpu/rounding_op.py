"""`mpx::round_to`: rounding to a number format as a real torch op, so that compilers cannot fold it away.

A `.to(fp16).to(fp32)` pair is a no-op to inductor; a custom op is opaque to it. The op has a fake kernel
(for tracing), autograd (the gradient is rounded to `backward_format`, "fp32" passes it through) and a
`region` check: a compiled graph traced under one emulated autocast refuses to run under another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mpx.errors import PolicyError
from mpx.formats import FP32, Format
from mpx.formats import format as lookup_format

_FORMATS: dict[str, Format] = {}

# Set by the emulated autocast: the key of the emulation now active ("" when none); see `region` below.
active_region: Callable[[], str] = lambda: ""  # noqa: E731 - replaced by backends.cpu.autocast


def _format(name: str) -> Format:
    if name not in _FORMATS:
        _FORMATS[name] = lookup_format(name)
    return _FORMATS[name]


def is_identity(fmt: str, overflow: str, subnormals: str) -> bool:
    """Rounding to fp32 with IEEE overflow and kept subnormals changes no fp32 value."""
    return _format(fmt) == FP32 and overflow == "inf" and subnormals == "keep"


def round_eager(x: torch.Tensor, fmt: str, overflow: str, subnormals: str) -> torch.Tensor:
    """x rounded to `fmt` under the overflow/subnormal rules, in x's dtype (no autograd)."""
    if is_identity(fmt, overflow, subnormals) and x.dtype == torch.float32:
        return x.clone()
    return _format(fmt).round(x, overflow=overflow, subnormals=subnormals)  # type: ignore[arg-type]


@torch.library.custom_op("mpx::round_to", mutates_args=(), device_types=None)
def round_to(
    x: torch.Tensor,
    format: str,  # noqa: A002 - the op schema's argument name
    overflow: str = "inf",
    subnormals: str = "keep",
    backward_format: str = "fp32",
    region: str = "",
) -> torch.Tensor:
    """x rounded to `format` (round to nearest even) as x's dtype; the gradient is rounded to `backward_format`.

    `region`, when not empty, is the emulated autocast the call was traced under: running it under another
    one raises PolicyError instead of silently computing with the numerics of the trace (outside any, as
    in a backward pass that recomputes it, it runs; torch.compile's autocast guards cover the rest).
    """
    now = active_region()
    if region and now and region != now:
        raise PolicyError(
            f"this compiled graph was traced under the emulated autocast {region!r} but runs under {now!r}; "
            "compile the model separately for each policy (or call torch._dynamo.reset() between policies)"
        )
    return round_eager(x, format, overflow, subnormals)


@round_to.register_fake
def _round_to_fake(
    x: torch.Tensor,
    format: str,  # noqa: A002
    overflow: str = "inf",
    subnormals: str = "keep",
    backward_format: str = "fp32",
    region: str = "",
) -> torch.Tensor:
    return torch.empty_like(x)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    _, _, ctx.overflow, ctx.subnormals, ctx.backward_format, _ = inputs


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    if not is_identity(ctx.backward_format, ctx.overflow, ctx.subnormals):
        grad = round_to(grad, ctx.backward_format, ctx.overflow, ctx.subnormals)
    return grad, None, None, None, None, None


round_to.register_autograd(_backward, setup_context=_setup_context)


class RoundTo(torch.autograd.Function):
    """The eager fast path of `round_to`: the same numerics without the custom-op dispatch overhead."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, fmt: str, overflow: str, subnormals: str, backward: str) -> torch.Tensor:
        ctx.rules = (backward, overflow, subnormals)
        return round_eager(x, fmt, overflow, subnormals)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if not is_identity(*ctx.rules):
            grad = round_eager(grad, *ctx.rules)
        return grad, None, None, None, None


def is_tracing() -> bool:
    """True while a compiler traces (dynamo, make_fx, fake tensors): then the opaque op must be used."""
    return torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0


def round_differentiable(
    x: torch.Tensor, fmt: str, overflow: str, subnormals: str, backward: str, region: str = ""
) -> torch.Tensor:
    """round_to with autograd: the custom op while tracing (opaque to compilers), a cheaper Function eagerly."""
    if is_tracing():
        return round_to(x, fmt, overflow, subnormals, backward, region)
    return RoundTo.apply(x, fmt, overflow, subnormals, backward)
