"""fp32 master copies of low-precision parameters, swapped into the optimizer in their place."""

from __future__ import annotations

import torch

from mpx.errors import MasterWeightError


class MasterWeights:
    """Pairs each parameter the optimizer steps with the tensor it really updates.

    A parameter stored in fp16/bf16 gets an fp32 master (when `enabled`); the optimizer's param groups and
    state are re-keyed to the masters, and `copy_to_model()` rounds them back (nearest-even).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, enabled: bool = True) -> None:
        self.pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        for group in optimizer.param_groups:
            for param in group["params"]:
                needs_master = enabled and param.dtype != torch.float32
                target = param.detach().float().clone() if needs_master else param
                self.pairs.append((param, target))
        self._optimizer = optimizer

    @staticmethod
    def validate(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Raise MasterWeightError for a model or optimizer mixed precision cannot train; changes nothing."""
        model_params = list(model.parameters())
        if not any(p.is_floating_point() for p in model_params):
            raise MasterWeightError(
                f"{type(model).__name__} has no floating-point parameters to train; "
                "mixed precision needs float weights (quantized or integer models train another way)"
            )
        optimizer_params = [p for g in optimizer.param_groups for p in g["params"]]
        if not optimizer_params:
            raise MasterWeightError("the optimizer has no parameters; build it from model.parameters()")
        known = {id(p) for p in model_params}
        foreign = [p for p in optimizer_params if id(p) not in known]
        if foreign:
            raise MasterWeightError(
                f"the optimizer holds {len(foreign)} tensors that are not parameters of the model; "
                "build it from the same model's parameters"
            )
        not_float = [p for p in optimizer_params if not p.is_floating_point()]
        if not_float:
            raise MasterWeightError(
                f"the optimizer holds {len(not_float)} non-float tensors; give it float parameters only"
            )

    def install(self) -> None:
        """Put the masters in the optimizer in place of the parameters (state moves with them)."""
        swap = {id(p): m for p, m in self.pairs if m is not p}
        for group in self._optimizer.param_groups:
            group["params"] = [swap.get(id(p), p) for p in group["params"]]
        for param, master in self.pairs:
            if master is not param and param in self._optimizer.state:
                self._optimizer.state[master] = self._optimizer.state.pop(param)

    @property
    def masters(self) -> list[torch.Tensor]:
        return [m for p, m in self.pairs if m is not p]

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Round every master into its parameter (nearest-even; a skipped step rewrites the same bits)."""
        for param, master in self.pairs:
            if master is not param:
                param.copy_(master)
