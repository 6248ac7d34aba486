"""Deliberately wrong backends, each the honest cpu backend wrong in exactly one way (see test_conformance_liars)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mpx.backends.cpu.backend import CpuBackend
from mpx.formats import FP16, FP32, Format
from mpx.ops.spec import OpSpec

BLOCK = 64  # the exact fp32 partial sums a running-sum liar adds into its low-precision accumulator


def running_sum_gemm(a: torch.Tensor, b: torch.Tensor, accumulator: Format) -> torch.Tensor:
    """a @ b with exact fp32 partial sums of BLOCK terms added into an `accumulator` running sum."""
    total = torch.zeros(a.shape[0], b.shape[1], dtype=accumulator.torch_dtype)
    for start in range(0, a.shape[1], BLOCK):
        part = a[:, start : start + BLOCK].float() @ b[start : start + BLOCK].float()
        total = (total.float() + part).to(accumulator.torch_dtype)
    return total


class RunningSumGemm(CpuBackend):
    """fp16 (or bf16) GEMMs whose accumulator is an fp16 (bf16) running sum of exact 64-term fp32 partials."""

    name = "liar-running-sum"

    def __init__(self, accumulator: Format = FP16) -> None:
        super().__init__()
        self.accumulator = accumulator

    def _run(self, op: OpSpec, fmt: Format, inputs: tuple, pass_: str, grad_outputs: tuple | None) -> tuple:
        if pass_ != "forward" or fmt != self.accumulator or op.name not in ("matmul", "linear"):
            return super()._run(op, fmt, inputs, pass_, grad_outputs)
        if op.name == "matmul":
            return (running_sum_gemm(inputs[0], inputs[1], fmt),)
        x, weight, bias = inputs
        return ((running_sum_gemm(x, weight.t(), fmt).float() + bias.float()).to(fmt.torch_dtype),)


class BlindCheck(CpuBackend):
    """An overflow check (unscale_and_check_) blind to -inf (kind 'neg-inf') or to NaN (kind 'nan')."""

    name = "liar-blind-check"

    def __init__(self, blind_to: str) -> None:
        super().__init__()
        self.blind_to = blind_to

    def unscale_and_check_(
        self,
        grads: Sequence[torch.Tensor],
        found_inf: torch.Tensor,
        inv_scale: torch.Tensor,
        saturation_limit: float | None = None,
    ) -> torch.Tensor:
        for grad in grads:
            culprit = torch.isinf(grad) if self.blind_to == "nan" else torch.isnan(grad) | torch.isposinf(grad)
            if bool(culprit.any()):
                found_inf.fill_(1.0)
            grad.mul_(inv_scale)
        return found_inf


class FiniteOnlySaturation(CpuBackend):
    """Declares overflow 'inf', but its GEMMs clamp results that overflow the format while finite in fp32."""

    name = "liar-finite-saturation"

    def _run(self, op: OpSpec, fmt: Format, inputs: tuple, pass_: str, grad_outputs: tuple | None) -> tuple:
        results = super()._run(op, fmt, inputs, pass_, grad_outputs)
        if pass_ != "forward" or op.autocast != "lowp":
            return results
        with torch.no_grad():
            exact = op.reference(*(t.float() for t in inputs), **op.attrs)[0]
        out = op.output_format(fmt)
        clamp = torch.isfinite(exact) & torch.isinf(results[0].float())
        clamped = torch.where(clamp, exact.sign() * out.max, results[0].float())
        return (clamped.to(out.torch_dtype),)


class AdamStepOnSkip(CpuBackend):
    """A masked optimizer step that advances Adam's hidden step count on a skipped step too."""

    name = "liar-adam-step"

    def masked_step(
        self,
        optimizer: torch.optim.Optimizer,
        grads: Mapping[torch.Tensor, torch.Tensor],
        skip: torch.Tensor,
        state_formats: object = None,
    ) -> None:
        super().masked_step(optimizer, grads, skip, state_formats)  # type: ignore[arg-type]
        if bool(skip):
            for param in grads:
                state = optimizer.state[param]
                if "step" in state:
                    state["step"] += 1


class FlushesButDeclaresKeep(CpuBackend):
    """Declares subnormals 'keep', but flushes subnormal results (a semantics mismatch)."""

    name = "liar-semantics"

    def _store(self, result: torch.Tensor, fmt: Format) -> torch.Tensor:
        return fmt.round(result, overflow=self.overflow, subnormals="flush").to(fmt.torch_dtype)


class ExpOffByUlps(CpuBackend):
    """exp a few ULPs off in fp32 (a kind the suite always caught: wrong numbers)."""

    name = "liar-exp"

    def _run(self, op: OpSpec, fmt: Format, inputs: tuple, pass_: str, grad_outputs: tuple | None) -> tuple:
        results = super()._run(op, fmt, inputs, pass_, grad_outputs)
        if op.name != "exp" or pass_ != "forward" or fmt != FP32:
            return results
        return ((results[0].float() * (1 + 4 * fmt.eps)).to(fmt.torch_dtype),)
