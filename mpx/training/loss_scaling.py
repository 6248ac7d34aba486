"""Loss scalers: no-op, static and dynamic (torch.amp.GradScaler semantics, plus floor, ceiling, hysteresis).

The scale, the growth counter and the hysteresis counter are device tensors updated in place with
branch-free arithmetic: `found_inf` is never read back to the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from mpx.errors import LossScaleError
from mpx.training.overflow import unscale_and_check_
from mpx.training.scaler_checks import check_device as _check_device
from mpx.training.scaler_checks import check_factor as _check_factor
from mpx.training.scaler_checks import check_scale as _check_scale
from mpx.training.scaler_checks import count as _count

_GRAD_SCALER_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


class LossScaler:
    """Common protocol: scale(loss), unscale_(grads) -> found_inf, update(found_inf), state_dict()."""

    def __init__(self, scale: float, device: torch.device | str | None = None) -> None:
        self._init_scale = scale
        self._device = _check_device(device)
        self._scale: torch.Tensor | None = None

    def _lazy_init(self, device: torch.device) -> None:
        self._device = device
        self._scale = torch.full((1,), self._init_scale, dtype=torch.float32, device=device)

    def _ensure(self, device: torch.device | None = None) -> None:
        if self._scale is None:
            self._lazy_init(device or self._device or torch.device("cpu"))

    @property
    def loss_scale(self) -> torch.Tensor:
        """The current scale: a 1-element float32 tensor on the device."""
        self._ensure()
        assert self._scale is not None
        return self._scale

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """loss * S (a tensor op on the loss's device)."""
        self._ensure(loss.device)
        return loss * self.loss_scale.to(loss.device)

    def unscale_(
        self, grads: Sequence[torch.Tensor], saturation_limit: float | None = None, allow_fp16: bool = False
    ) -> torch.Tensor:
        """Divide `grads` by S in place; returns found_inf, a 1-element float32 device tensor (1.0: overflow)."""
        grads = [g for g in grads if g is not None]
        if not allow_fp16:
            low = sorted({str(g.dtype) for g in grads if g.dtype in (torch.float16, torch.bfloat16)})
            if low:
                raise LossScaleError(
                    f"cannot unscale {', '.join(low)} gradients in place: small values underflow once divided "
                    "by the scale; unscale fp32 copies (MixedPrecision keeps fp32 master weights for this)"
                )
        self._ensure(grads[0].device if grads else None)
        found_inf = torch.zeros(1, dtype=torch.float32, device=self.loss_scale.device)
        inv_scale = torch.reciprocal(self.loss_scale)
        return unscale_and_check_(grads, found_inf, inv_scale, saturation_limit)

    def update(self, found_inf: torch.Tensor) -> None:
        """Adjust the scale after a step (no-op for fixed scales)."""

    def state_dict(self) -> dict[str, Any]:
        """GradScaler-compatible keys (reading the scale syncs: call it outside the step loop)."""
        return {
            "scale": float(self.loss_scale.item()),
            "growth_factor": 1.0,
            "backoff_factor": 1.0,
            "growth_interval": 2**31 - 1,
            "_growth_tracker": 0,
        }

    def check_state_dict(self, state: Any) -> None:
        """Raise LossScaleError unless load_state_dict(state) would succeed; changes nothing."""
        if not isinstance(state, dict):
            raise LossScaleError(f"scaler state must be a dict, not {type(state).__name__}")
        _check_scale(state.get("scale", self._init_scale))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        scale = _check_scale(state.get("scale", self._init_scale))
        self._init_scale = scale
        if self._scale is not None:
            self._scale.fill_(scale)


class NoOpLossScaler(LossScaler):
    """Scale 1: for bf16 and fp32, whose gradients have fp32's range. Still detects overflow."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        super().__init__(1.0, device)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The scale stays 1 whatever the (well-formed) state says."""
        self.check_state_dict(state)


class StaticLossScaler(LossScaler):
    """A fixed scale S: loss * S, gradients / S, never adjusted."""

    def __init__(self, scale: float, device: torch.device | str | None = None) -> None:
        super().__init__(_check_scale(scale), device)


class DynamicLossScaler(LossScaler):
    """torch.amp.GradScaler's dynamic scale, clamped to [min_scale, max_scale], with DeepSpeed hysteresis.

    On overflow: spend one unit of hysteresis; when none is left, multiply the scale by `backoff_factor`
    (not below `min_scale`); the growth counter resets. Otherwise count a good step; after
    `growth_interval` of them multiply by `growth_factor` (not above `max_scale`, and only if finite)
    and refill the hysteresis. `min_scale=0, max_scale=inf, hysteresis=1` is exactly GradScaler.
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        min_scale: float = 1.0,
        max_scale: float = 2.0**24,
        hysteresis: int = 1,
        device: torch.device | str | None = None,
    ) -> None:
        init_scale = _check_scale(init_scale, "init_scale")
        growth_factor = _check_factor(growth_factor, "growth_factor", 1.0, math.inf, 2.0)
        backoff_factor = _check_factor(backoff_factor, "backoff_factor", 0.0, 1.0, 0.5)
        for name, value in (("growth_interval", growth_interval), ("hysteresis", hysteresis)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LossScaleError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(min_scale, (int, float)) and min_scale >= 0 and math.isfinite(min_scale)):
            raise LossScaleError(f"min_scale must be a finite number >= 0, got {min_scale!r}")
        if not (isinstance(max_scale, (int, float)) and max_scale >= min_scale and not math.isnan(max_scale)):
            raise LossScaleError(f"max_scale must be >= min_scale ({min_scale}), got {max_scale!r}")
        if not min_scale <= init_scale <= max_scale:
            raise LossScaleError(f"init_scale {init_scale} is outside [{min_scale}, {max_scale}]")
        super().__init__(init_scale, device)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.hysteresis = hysteresis
        self._init_growth_tracker = 0
        self._init_hysteresis_left = hysteresis
        self._growth_tracker: torch.Tensor | None = None
        self._hysteresis_left: torch.Tensor | None = None

    def _lazy_init(self, device: torch.device) -> None:
        super()._lazy_init(device)
        self._growth_tracker = torch.full((1,), self._init_growth_tracker, dtype=torch.int32, device=device)
        self._hysteresis_left = torch.full((1,), self._init_hysteresis_left, dtype=torch.int32, device=device)

    def update(self, found_inf: torch.Tensor) -> None:
        """Branch-free update of scale, growth counter and hysteresis, in place on the device."""
        self._ensure(found_inf.device)
        scale, tracker, left = self._scale, self._growth_tracker, self._hysteresis_left
        assert scale is not None and tracker is not None and left is not None
        if self.hysteresis == 1:  # GradScaler's own fused kernel, then the floor and the ceiling
            flag = found_inf.to(scale.device, torch.float32).reshape(1)
            torch._amp_update_scale_(
                scale, tracker, flag, self.growth_factor, self.backoff_factor, self.growth_interval
            )
            scale.clamp_(min=self.min_scale, max=self.max_scale)
            return
        overflow = found_inf.to(scale.device).reshape(1) > 0
        back_off = overflow & (left <= 1)
        good = tracker + 1
        grow = (~overflow) & (good >= self.growth_interval)
        grown = scale * self.growth_factor
        grown = torch.where(torch.isfinite(grown), grown.clamp(max=self.max_scale), scale)
        shrunk = (scale * self.backoff_factor).clamp(min=self.min_scale)
        scale.copy_(torch.where(back_off, shrunk, torch.where(grow, grown, scale)))
        tracker.copy_(torch.where(overflow | grow, torch.zeros_like(good), good))
        spent = torch.where(back_off, left, left - 1)
        left.copy_(torch.where(overflow, spent, torch.where(grow, torch.full_like(left, self.hysteresis), left)))

    def state_dict(self) -> dict[str, Any]:
        """GradScaler's keys and meaning, plus min_scale, max_scale, hysteresis and _hysteresis_left."""
        self._ensure()
        assert self._growth_tracker is not None and self._hysteresis_left is not None
        return {
            "scale": float(self.loss_scale.item()),
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "_growth_tracker": int(self._growth_tracker.item()),
            "min_scale": self.min_scale,
            "max_scale": self.max_scale,
            "hysteresis": self.hysteresis,
            "_hysteresis_left": int(self._hysteresis_left.item()),
        }

    def _parse_state(self, state: Any) -> tuple[DynamicLossScaler, int, int]:
        """The scaler `state` describes, its growth counter and hysteresis left; raises LossScaleError."""
        if not isinstance(state, dict):
            raise LossScaleError(f"scaler state must be a dict, not {type(state).__name__}")
        missing = [k for k in _GRAD_SCALER_KEYS if k not in state]
        if missing:
            raise LossScaleError(
                f"scaler state lacks {', '.join(missing)}; pass a DynamicLossScaler or GradScaler state_dict"
            )
        candidate = DynamicLossScaler(
            init_scale=state["scale"],
            growth_factor=state["growth_factor"],
            backoff_factor=state["backoff_factor"],
            growth_interval=_count(state, "growth_interval", 1),
            min_scale=state.get("min_scale", min(self.min_scale, _check_scale(state["scale"]))),
            max_scale=state.get("max_scale", max(self.max_scale, _check_scale(state["scale"]))),
            hysteresis=_count(state, "hysteresis", 1, self.hysteresis),
        )
        tracker = _count(state, "_growth_tracker", 0)
        left = _count(state, "_hysteresis_left", 0, candidate.hysteresis)
        return candidate, tracker, left

    def check_state_dict(self, state: Any) -> None:
        self._parse_state(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Accepts its own state_dict or torch.amp.GradScaler's; validates everything before changing anything."""
        candidate, tracker, left = self._parse_state(state)
        for name in ("growth_factor", "backoff_factor", "growth_interval", "min_scale", "max_scale", "hysteresis"):
            setattr(self, name, getattr(candidate, name))
        self._init_scale = candidate._init_scale
        self._init_growth_tracker = tracker
        self._init_hysteresis_left = left
        if self._scale is not None and self._growth_tracker is not None and self._hysteresis_left is not None:
            self._scale.fill_(self._init_scale)
            self._growth_tracker.fill_(self._init_growth_tracker)
            self._hysteresis_left.fill_(self._init_hysteresis_left)


def scale_gradients(grads: Sequence[float | torch.Tensor], scale: float | torch.Tensor) -> list[float | torch.Tensor]:
    """Each gradient times `scale` (floats stay floats, tensors stay tensors in their own dtype)."""
    if not isinstance(scale, torch.Tensor):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or math.isnan(scale):
            raise LossScaleError(f"scale must be a number or tensor, got {scale!r}")
    return [g * scale if isinstance(g, torch.Tensor) else float(g) * float(scale) for g in grads]


def make_scaler(spec: Any, default: str, device: torch.device | str | None = None) -> LossScaler:
    """A scaler from 'dynamic' | 'static' | 'none' | a positive number | a LossScaler | None (use `default`)."""
    if spec is None:
        spec = default
    if isinstance(spec, LossScaler):
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key == "dynamic":
            return DynamicLossScaler(device=device)
        if key == "static":
            return StaticLossScaler(2.0**16, device=device)
        if key in ("none", "noop", "off"):
            return NoOpLossScaler(device=device)
        raise LossScaleError(f"unknown loss_scale {spec!r}; use 'dynamic', 'static', 'none', a number or a scaler")
    return StaticLossScaler(_check_scale(spec), device=device)
