"""Storage formats of gradients and optimizer state (e.g. Adam's first moment in bf16); the update is fp32."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mpx.errors import StateFormatError
from mpx.formats import FP32, Format
from mpx.formats import format as lookup_format

# The optimizer-state keys whose format can be chosen (torch.optim's own key names).
STATE_KEYS = ("exp_avg", "exp_avg_sq", "momentum_buffer")


@dataclass(frozen=True)
class StateFormats:
    """Storage formats of gradients and optimizer state; the update itself computes in fp32.

    `grads` applies to fp32 parameters without master copies: their gradients are moved into buffers of
    this format as soon as autograd has accumulated them.
    """

    grads: Format = FP32
    state: Mapping[str, Format] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.state) - set(STATE_KEYS)
        if unknown:
            raise StateFormatError(
                f"unknown optimizer-state keys {sorted(unknown)}; formats can be set for {', '.join(STATE_KEYS)}"
            )
        for fmt in (self.grads, *self.state.values()):
            if fmt.is_fp8:
                raise StateFormatError(
                    f"{fmt.name} cannot hold gradients or optimizer state here; use fp32, bf16 or fp16"
                )

    def for_key(self, key: str) -> Format:
        return self.state.get(key, FP32)


def state_formats(grads: str | Format = "fp32", **state: str | Format) -> StateFormats:
    """StateFormats from names: state_formats(grads="bf16", exp_avg="bf16", exp_avg_sq="fp32")."""
    return StateFormats(lookup_format(grads), {k: lookup_format(v) for k, v in state.items()})


FP32_STATE = StateFormats()
# fp32 weights + bf16 grads + bf16 Adam m + fp32 Adam v: 4 + 2 + 2 + 4 = 12 bytes per parameter.
LEAN_ADAM = StateFormats(grads=lookup_format("bf16"), state={"exp_avg": lookup_format("bf16")})
