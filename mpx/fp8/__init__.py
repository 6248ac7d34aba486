"""FP8 training for Linear layers: scaling recipes (current, delayed), fp8 GEMMs and Fp8Linear."""

from .gemm import FP8_CAPABILITY, GemmMode, fp8_gemm, gemm_mode
from .linear import Fp8Linear, convert_to_fp8
from .recipe import CurrentScaling, DelayedScaling, Fp8Recipe, recipe_for_policy
from .scaling import TensorScaling, quantize, scale_from_amax

__all__ = [
    "FP8_CAPABILITY",
    "CurrentScaling",
    "DelayedScaling",
    "Fp8Linear",
    "Fp8Recipe",
    "GemmMode",
    "TensorScaling",
    "convert_to_fp8",
    "fp8_gemm",
    "gemm_mode",
    "quantize",
    "recipe_for_policy",
    "scale_from_amax",
]
