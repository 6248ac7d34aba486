"""Fp8Linear: a Linear layer whose three GEMMs run in fp8 with per-tensor scales, and convert_to_fp8."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mpx.errors import Fp8Error, TrainingInputError
from mpx.fp8.gemm import GemmMode, _pad, fp8_gemm, gemm_mode
from mpx.fp8.recipe import DelayedScaling, Fp8Recipe
from mpx.fp8.scaling import TensorScaling, quantize


class Fp8Linear(torch.nn.Linear):
    """nn.Linear with fp8 GEMMs: input and weight in the recipe's forward format (e4m3), the output
    gradient in its backward format (e5m2), fp32 accumulation, output in the autocast dtype (or x's).

    On CUDA GPUs with compute capability >= 8.9 the GEMMs are torch._scaled_mm; on the CPU the same
    scaling code runs with an fp32 matmul over the fp8 values (emulation).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        recipe: Fp8Recipe | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.recipe = recipe if recipe is not None else DelayedScaling()
        self.input_scaling = TensorScaling(self.recipe, self.recipe.forward).to(self.weight.device)
        self.weight_scaling = TensorScaling(self.recipe, self.recipe.forward).to(self.weight.device)
        self.grad_output_scaling = TensorScaling(self.recipe, self.recipe.backward).to(self.weight.device)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, recipe: Fp8Recipe | None = None) -> Fp8Linear:
        """An Fp8Linear sharing `linear`'s parameters (an optimizer built on them keeps working)."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta", recipe=recipe)
        layer.weight, layer.bias = linear.weight, linear.bias
        device = linear.weight.device
        for name in ("input_scaling", "weight_scaling", "grad_output_scaling"):
            setattr(layer, name, TensorScaling(layer.recipe, getattr(layer, name).fmt).to(device))
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise TrainingInputError(
                f"Fp8Linear expects inputs with {self.in_features} features, got shape {tuple(x.shape)}"
            )
        mode = gemm_mode(x.device, self.recipe.gemm)
        device_type = x.device.type
        out_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
        return _Fp8LinearFunction.apply(x, self.weight, self.bias, self, mode, out_dtype)


class _Fp8LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        layer: Fp8Linear,
        mode: GemmMode,
        out_dtype: torch.dtype,
    ) -> torch.Tensor:
        emulated = mode == "emulated"
        fmt = layer.recipe.forward
        with torch.autocast(x.device.type, enabled=False):
            x2 = x.reshape(-1, x.shape[-1])
            x_scale = layer.input_scaling.scale_for(x2)
            w_scale = layer.weight_scaling.scale_for(weight)
            x_q, w_q = quantize(x2, x_scale, fmt, emulated), quantize(weight, w_scale, fmt, emulated)
            x_inv, w_inv = x_scale.reciprocal(), w_scale.reciprocal()
            out = fp8_gemm(x_q, w_q.t(), x_inv, w_inv, out_dtype, mode, bias)
        ctx.save_for_backward(x_q, w_q, x_inv, w_inv)
        ctx.layer, ctx.mode, ctx.shapes = layer, mode, (x.shape, x.dtype, weight.dtype, bias is not None)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x_q, w_q, x_inv, w_inv = ctx.saved_tensors
        layer, mode = ctx.layer, ctx.mode
        x_shape, x_dtype, w_dtype, has_bias = ctx.shapes
        with torch.autocast(grad_out.device.type, enabled=False):
            g2 = grad_out.reshape(-1, grad_out.shape[-1])
            g_scale = layer.grad_output_scaling.scale_for(g2)
            g_q = quantize(g2, g_scale, layer.recipe.backward, mode == "emulated")
            g_inv = g_scale.reciprocal()
            grad_x = fp8_gemm(g_q, w_q, g_inv, w_inv, x_dtype, mode) if ctx.needs_input_grad[0] else None
            grad_w = None
            if ctx.needs_input_grad[1]:
                rows = _pad_rows(g_q, x_q) if mode == "scaled_mm" else (g_q, x_q)
                grad_w = fp8_gemm(rows[0].t(), rows[1], g_inv, x_inv, w_dtype, mode)
            grad_b = g2.float().sum(0).to(w_dtype) if has_bias and ctx.needs_input_grad[2] else None
        grad_x = grad_x.reshape(x_shape) if grad_x is not None else None
        return grad_x, grad_w, grad_b, None, None, None


def _pad_rows(g_q: torch.Tensor, x_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight gradient reduces over the tokens: pad them to a multiple of 16 for torch._scaled_mm."""
    missing = -g_q.shape[0] % 16
    if not missing:
        return g_q, x_q
    return _pad(g_q, (0, 0, 0, missing)), _pad(x_q, (0, 0, 0, missing))


def convert_to_fp8(
    model: torch.nn.Module,
    recipe: Fp8Recipe | None = None,
    exclude: Callable[[str, torch.nn.Linear], bool] | None = None,
) -> torch.nn.Module:
    """Replace every nn.Linear of `model` (in place) with an Fp8Linear sharing its parameters.

    `exclude(name, layer)` keeps chosen layers (e.g. the output head) in higher precision. Raises
    BackendUnavailableError when the model lives on a CUDA GPU without fp8 tensor cores.
    """
    recipe = recipe if recipe is not None else DelayedScaling()
    if type(model) is torch.nn.Linear:
        raise Fp8Error("convert_to_fp8 replaces Linear layers inside a model; use Fp8Linear.from_linear(layer)")
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if type(module) is torch.nn.Linear and not (exclude and exclude(name, module))
    ]
    for _, module in targets:
        gemm_mode(module.weight.device, recipe.gemm)
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Fp8Linear.from_linear(module, recipe))
    return model
