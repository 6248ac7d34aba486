"""Precision policies: which format parameters, compute and outputs use (jmp-style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from .errors import FormatError, PolicyError, unknown_name_message
from .formats import BF16, FORMATS, FP8_E4M3, FP8_E5M2, FP16, FP32, Format
from .formats import format as lookup_format

# How torch.autocast treats an op: run it in the low format, force fp32, or keep the inputs' format.
AutocastClass = Literal["lowp", "fp32", "promote"]


@dataclass(frozen=True)
class Policy:
    """Formats for parameters, compute and outputs; `grads` is the backward GEMM format (fp8-hybrid: e5m2)."""

    params: Format
    compute: Format
    output: Format
    grads: Format | None = None
    name: str | None = None

    @property
    def backward(self) -> Format:
        return self.grads or self.compute

    @property
    def is_mixed(self) -> bool:
        return self.compute != FP32 or self.params != FP32

    @property
    def needs_master_weights(self) -> bool:
        """Low-precision parameters need fp32 master copies for the optimizer."""
        return self.params != FP32

    @property
    def default_loss_scale(self) -> str:
        """fp16 and fp8 gradients underflow without loss scaling; bf16 and fp32 have fp32's range."""
        return "dynamic" if self.backward in (FP16, FP8_E4M3, FP8_E5M2) else "none"

    def op_format(self, autocast: AutocastClass, backward: bool = False) -> Format:
        """The format an op of this autocast class computes in under this policy."""
        if autocast == "fp32":
            return FP32
        if autocast == "lowp":
            return self.backward if backward else self.compute
        # ops outside both autocast lists keep the activations' format; fp8 is a GEMM-only format
        return gemm_output_format(self.compute)

    def fsdp_mixed_precision(self, reduce_dtype: object = "fp32", output_dtype: object = None) -> Any:
        """FSDP2's MixedPrecisionPolicy for this policy: param_dtype = compute, reduce_dtype fp32 unless asked.

        Pass it to `torch.distributed.fsdp.fully_shard(module, mp_policy=...)`; formats by name, Format or dtype.
        """
        from mpx.distributed.fsdp import fsdp_policy

        return fsdp_policy(self, _dtype_of(reduce_dtype), _dtype_of(output_dtype))

    def __str__(self) -> str:
        spec = f"params={self.params},compute={self.compute},output={self.output}"
        spec += f",grads={self.grads}" if self.grads else ""
        return self.name or spec


PRESETS: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(FP32, FP32, FP32, name="fp32"),
        Policy(FP32, FP16, FP32, name="fp16-mixed"),
        Policy(FP32, BF16, FP32, name="bf16-mixed"),
        Policy(FP16, FP16, FP16, name="fp16-pure"),
        Policy(BF16, BF16, BF16, name="bf16-pure"),
        Policy(FP32, FP8_E4M3, FP32, grads=FP8_E5M2, name="fp8-hybrid"),
    )
}
_KEYS = {
    **{k: "params" for k in ("params", "param", "p")},
    **{k: "compute" for k in ("compute", "c")},
    **{k: "output" for k in ("output", "o")},
    **{k: "grads" for k in ("grads", "grad", "g")},
}
_SYNTAX = (
    "keys: params (param, p), compute (c), output (o), grads (grad, g); "
    f"formats: {', '.join(f.name for f in FORMATS)} (or aliases such as float16, half, bfloat16)"
)


def policy(spec: str | Policy) -> Policy:
    """A preset ('bf16-mixed', ...) or a jmp-style string 'params=fp32,compute=bf16,output=fp32'.

    Keys: params (param, p), compute (c), output (o), grads (grad, g); formats by name or alias (float16, half,
    bfloat16, ...). compute and output default to params; a string that spells out a preset gives the preset.
    """
    if isinstance(spec, Policy):
        return spec
    if not isinstance(spec, str):
        raise PolicyError(f"a policy is a preset name or 'params=..,compute=..,output=..', not {type(spec).__name__}")
    text = spec.strip().lower()
    if text.replace("_", "-") in PRESETS:
        return PRESETS[text.replace("_", "-")]
    if "=" not in text:
        hint = "; or write 'params=fp32,compute=bf16,output=fp32'"
        raise PolicyError(unknown_name_message("policy", spec, PRESETS) + hint)
    fields: dict[str, Format] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or key not in _KEYS:
            raise PolicyError(f"bad policy entry {part!r} in {spec!r}; {_SYNTAX}")
        if _KEYS[key] in fields:
            raise PolicyError(f"{_KEYS[key]} is given twice in {spec!r}; {_SYNTAX}")
        try:
            fields[_KEYS[key]] = lookup_format(value)
        except FormatError:
            raise PolicyError(f"unknown format {value!r} for {key} in {spec!r}; {_SYNTAX}") from None
    params = fields.get("params", FP32)
    parsed = Policy(params, fields.get("compute", params), fields.get("output", params), fields.get("grads"))
    return next((p for p in PRESETS.values() if _same_formats(p, parsed)), parsed)


def _dtype_of(value: object) -> torch.dtype | None:
    """A torch dtype from a format name, a Format or a dtype (None stays None)."""
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, Format):
        return value.torch_dtype
    if isinstance(value, str):
        try:
            return lookup_format(value).torch_dtype
        except FormatError:
            pass
    raise PolicyError(f"expected a format name such as 'fp32', a Format or a torch dtype, not {value!r}")


def _same_formats(a: Policy, b: Policy) -> bool:
    return (a.params, a.compute, a.output, a.grads) == (b.params, b.compute, b.output, b.grads)


def gemm_output_format(fmt: Format) -> Format:
    """The format a GEMM in `fmt` writes: bf16 for fp8 inputs (as Transformer Engine and _scaled_mm do), else fmt."""
    return BF16 if fmt.is_fp8 else fmt
