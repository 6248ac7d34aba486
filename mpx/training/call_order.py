"""The order of a training step's calls, as a small state machine like torch.amp's OptState.

READY (nothing since the last step() or zero_grad()) -> SCALED (backward() accumulated scaled gradients)
-> UNSCALED (unscale_() or clip_grad_norm_() divided them by the scale) -> step() -> READY.
A backward() in UNSCALED would mix unscaled and scaled gradients (the earlier ones divided twice), and a
step() with no gradient, or only the ones the last step() already used, would count a step that learned nothing:
both raise TrainingInputError.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Iterable

import torch

from mpx.errors import TrainingInputError


class Stage(enum.Enum):
    READY = "no gradients since the last step() or zero_grad()"
    SCALED = "scaled gradients accumulated by backward()"
    UNSCALED = "gradients unscaled by unscale_() or clip_grad_norm_()"


class CallOrder:
    """Tracks the stage of the current step and the gradients the last step() consumed."""

    def __init__(self) -> None:
        self.stage = Stage.READY
        self._spent: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}

    def before_backward(self) -> None:
        if self.stage is Stage.UNSCALED:
            raise TrainingInputError(
                "backward() after unscale_() or clip_grad_norm_() in the same step would divide the earlier "
                "gradients by the loss scale twice (unscale_() has already been called since the last step()); "
                "call step() (or zero_grad()) first, and unscale or clip only after the last backward() of a step"
            )

    def after_backward(self) -> None:
        self.stage = Stage.SCALED

    def before_unscale(self, grads: Callable[[], Iterable[torch.Tensor]]) -> None:
        """Raise unless there are gradients this step has not used yet (from backward(), or a plain .backward()).

        `grads` is called only when no backward() of this trainer ran since the last step (a plain .backward()).
        """
        if self.stage is not Stage.READY:
            return
        grads = list(grads())
        if not grads:
            raise TrainingInputError(
                "step() with no gradients: call backward(loss) first (no parameter has a gradient; "
                "nothing was computed since the last step() or zero_grad())"
            )
        if all(self._is_spent(grad) for grad in grads):
            raise TrainingInputError(
                "step() with no new gradients: the last step() already used these; call backward(loss) first"
            )

    def _is_spent(self, grad: torch.Tensor) -> bool:
        record = self._spent.get(id(grad))
        return record is not None and record[0]() is grad and record[1] == grad._version

    def after_unscale(self) -> None:
        self.stage = Stage.UNSCALED

    def after_step(self, grads: Iterable[torch.Tensor]) -> None:
        """Back to READY; remember the gradients this step used (weakly), to refuse stepping them again."""
        self._spent = {id(grad): (weakref.ref(grad), grad._version) for grad in grads}
        self.stage = Stage.READY

    def reset(self) -> None:
        """zero_grad(): back to READY with nothing spent."""
        self._spent = {}
        self.stage = Stage.READY
