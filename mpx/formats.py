"""Number formats (fp32, fp16, bf16, fp8 e4m3/e5m2) and exact round-to-nearest-even into them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import torch

from .errors import FormatError, unknown_name_message

Overflow = Literal["inf", "saturate"]
Subnormals = Literal["keep", "flush"]
ArrayLike = TypeVar("ArrayLike", torch.Tensor, np.ndarray, float)

# onnx.TensorProto data types, written out so that importing mpx does not import onnx.
_ONNX_FLOAT, _ONNX_FLOAT16, _ONNX_BFLOAT16, _ONNX_FLOAT8E4M3FN, _ONNX_FLOAT8E5M2 = 1, 10, 16, 17, 19

# (signed integer view, mantissa bits, smallest normal) of the float dtypes `round` works on bit by bit.
_BIT_LAYOUT = {
    torch.float32: (torch.int32, 23, 2.0**-126),
    torch.float64: (torch.int64, 52, 2.0**-1022),
}


@dataclass(frozen=True)
class Format:
    """A binary floating-point format: its bit layout, range and rounding."""

    name: str
    exponent_bits: int
    mantissa_bits: int
    has_inf: bool
    torch_dtype: torch.dtype = field(repr=False)
    onnx_type: int = field(repr=False)
    aliases: tuple[str, ...] = field(default=(), repr=False)

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def max(self) -> float:
        if self.has_inf:  # IEEE: the all-ones exponent is inf/NaN
            return (2 - 2.0**-self.mantissa_bits) * 2.0 ** (2**self.exponent_bits - 2 - self.bias)
        # fn formats (e4m3fn): the all-ones exponent holds normals, except the all-ones mantissa (NaN)
        return (2 - 2.0 ** (1 - self.mantissa_bits)) * 2.0 ** (2**self.exponent_bits - 1 - self.bias)

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (1 - self.bias - self.mantissa_bits)

    @property
    def eps(self) -> float:
        return 2.0**-self.mantissa_bits

    @property
    def is_fp8(self) -> bool:
        return self.bits == 8

    def ulp(self, x: torch.Tensor) -> torch.Tensor:
        """The spacing of this format at |x| (the subnormal spacing below min_normal), as float64.

        Exact: the exponent comes from frexp and the power of two is built from its bits (inf stays inf).
        """
        magnitude = x.detach().abs().to(torch.float64).clamp(min=self.min_normal)
        _, exponent = torch.frexp(magnitude)  # magnitude = m * 2**exponent with m in [0.5, 1)
        biased = (exponent.to(torch.int64) - 1 - self.mantissa_bits + 1023).clamp(1, 2046)
        spacing = (biased << 52).view(torch.float64)
        return torch.where(magnitude.isfinite(), spacing, magnitude)

    def round(self, x: ArrayLike, *, overflow: Overflow = "inf", subnormals: Subnormals = "keep") -> ArrayLike:
        """x rounded to this format (nearest, ties to even), as values of x's own float dtype.

        Overflow gives inf where the format has it and NaN where it does not (e4m3fn), or +-max with
        overflow="saturate" (inf inputs too). subnormals="flush" turns results below min_normal into +-0.
        """
        if isinstance(x, torch.Tensor):
            return _round_tensor(self, x, overflow, subnormals)
        if isinstance(x, np.ndarray):
            if x.dtype not in (np.float16, np.float32, np.float64):
                raise FormatError(
                    f"round needs a float16/32/64 array, got {x.dtype}; convert it with .astype(np.float32)"
                )
            return _round_tensor(self, torch.from_numpy(np.ascontiguousarray(x)), overflow, subnormals).numpy()
        if isinstance(x, (float, int)):
            return float(_round_tensor(self, torch.tensor([float(x)], dtype=torch.float64), overflow, subnormals))
        raise FormatError(f"round takes a torch.Tensor, numpy array or float, not {type(x).__name__}")

    def __str__(self) -> str:
        return self.name


FP32 = Format("fp32", 8, 23, True, torch.float32, _ONNX_FLOAT, ("float32", "float", "f32"))
FP16 = Format("fp16", 5, 10, True, torch.float16, _ONNX_FLOAT16, ("float16", "half", "f16"))
BF16 = Format("bf16", 8, 7, True, torch.bfloat16, _ONNX_BFLOAT16, ("bfloat16", "b16"))
FP8_E4M3 = Format(
    "fp8_e4m3", 4, 3, False, torch.float8_e4m3fn, _ONNX_FLOAT8E4M3FN, ("e4m3", "e4m3fn", "float8_e4m3fn", "fp8_e4m3fn")
)
FP8_E5M2 = Format("fp8_e5m2", 5, 2, True, torch.float8_e5m2, _ONNX_FLOAT8E5M2, ("e5m2", "float8_e5m2"))

FORMATS: tuple[Format, ...] = (FP32, FP16, BF16, FP8_E4M3, FP8_E5M2)
_BY_NAME = {alias: fmt for fmt in FORMATS for alias in (fmt.name, *fmt.aliases)}
_BY_DTYPE = {fmt.torch_dtype: fmt for fmt in FORMATS}


def format(name: str | Format | torch.dtype) -> Format:  # noqa: A001 - the public name DESIGN.md fixes
    """The format called `name` (or an alias such as 'half', 'bfloat16', 'e4m3fn'), or of a torch dtype."""
    if isinstance(name, Format):
        return name
    if isinstance(name, torch.dtype):
        if name in _BY_DTYPE:
            return _BY_DTYPE[name]
        raise FormatError(f"no mpx format for {name}; formats: {', '.join(f.name for f in FORMATS)}")
    if not isinstance(name, str):
        raise FormatError(f"a format is named by a string, not {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in _BY_NAME:
        raise FormatError(unknown_name_message("format", name, [f.name for f in FORMATS]))
    return _BY_NAME[key]


def _round_tensor(fmt: Format, x: torch.Tensor, overflow: Overflow, subnormals: Subnormals) -> torch.Tensor:
    if not x.is_floating_point():
        raise FormatError(f"round needs a floating-point tensor, got {x.dtype}; convert it with .float()")
    if overflow not in ("inf", "saturate"):
        raise FormatError(f"overflow must be 'inf' or 'saturate', not {overflow!r}")
    if subnormals not in ("keep", "flush"):
        raise FormatError(f"subnormals must be 'keep' or 'flush', not {subnormals!r}")
    if x.dtype == fmt.torch_dtype:
        rounded = x.clone()
    elif torch.compiler.is_compiling():  # inductor folds a .to(low).to(x.dtype) pair away: do the arithmetic
        rounded = _round_arithmetic(fmt, x)
    elif x.dtype in (torch.float32, torch.float16, torch.bfloat16) and fmt.bits < torch.finfo(x.dtype).bits:
        rounded = _round_by_cast(fmt, x)
    else:
        rounded = _round_bits(fmt, x)
    if overflow == "saturate":  # what overflowed (inf inputs too) becomes +-max, NaN stays NaN
        overflowed = rounded.isinf() if fmt.has_inf else rounded.isnan() & ~x.isnan()
        rounded = torch.where(overflowed, torch.full_like(rounded, fmt.max).copysign(x), rounded)
    if subnormals == "flush":
        rounded = rounded * (rounded.abs() >= fmt.min_normal)  # keeps the sign of zero, inf and NaN
    return rounded


def _round_arithmetic(fmt: Format, x: torch.Tensor) -> torch.Tensor:
    """Exact rounding in float64 arithmetic: scale by the format's spacing at |x|, round half to even, scale back.

    No cast pair for a compiler to fold, no data-dependent indexing: what torch.compile(fmt.round) runs.
    """
    wide = x.to(torch.float64)
    exponent = (wide.abs().view(torch.int64) >> 52) - 1022  # |x| = m * 2**exponent with m in [0.5, 1)
    spacing_exponent = exponent.clamp(min=2 - fmt.bias) - 1 - fmt.mantissa_bits  # fixed below min_normal
    spacing = ((spacing_exponent + 1023) << 52).view(torch.float64)
    rounded = torch.round(wide / spacing) * spacing
    overflow_value = torch.full_like(wide, math.inf if fmt.has_inf else math.nan).copysign(wide)
    return torch.where(rounded.abs() > fmt.max, overflow_value, rounded).to(x.dtype)


def _round_by_cast(fmt: Format, x: torch.Tensor) -> torch.Tensor:
    """torch's own conversion: a single correctly rounded step from fp32/fp16/bf16.

    torch saturates e4m3fn on overflow; DESIGN.md (and ml_dtypes) want NaN there. A saturated value
    reads +-max, so only the inputs that came out as +-max are looked at again: those past the
    rounding boundary above max (the midpoint to the next step) become NaN, in the 1-byte codes.
    """
    if not fmt.has_inf:
        x = x.contiguous()  # the codes below are indexed like x.reshape(-1)
    low = x.to(fmt.torch_dtype)
    if not fmt.has_inf:
        codes = low.view(torch.uint8).reshape(-1)
        max_code = 0x80 | (2**fmt.exponent_bits - 1) << fmt.mantissa_bits | (2**fmt.mantissa_bits - 2)
        at_max = torch.nonzero((codes | 0x80) == max_code).squeeze(1)  # +-max, either sign
        if at_max.numel():
            boundary = fmt.max + 2.0 ** (math.floor(math.log2(fmt.max)) - fmt.mantissa_bits - 1)
            past = at_max[x.reshape(-1)[at_max].abs() > boundary]
            codes[past] |= 0x7F  # the all-ones exponent and mantissa: NaN, keeping the sign
    return low.to(x.dtype)


def _round_bits(fmt: Format, x: torch.Tensor) -> torch.Tensor:
    """Exact rounding by integer arithmetic on the bits of x: a single rounding from any float dtype.

    torch converts float64 to fp16/bf16 through float32 (two roundings); this path does not.
    """
    source = x if x.dtype in _BIT_LAYOUT else x.to(torch.float32)
    int_dtype, source_mantissa, source_min_normal = _BIT_LAYOUT[source.dtype]
    if fmt.mantissa_bits > source_mantissa:
        raise FormatError(f"cannot round {x.dtype} values to the wider format {fmt.name}")

    def bits_of(value: float) -> int:
        return int(torch.tensor(value, dtype=source.dtype).view(int_dtype))

    flat = source.reshape(-1).contiguous()
    bits = flat.view(int_dtype)
    magnitude = bits & torch.iinfo(int_dtype).max
    sign = bits & torch.iinfo(int_dtype).min
    is_nan = magnitude > bits_of(math.inf)
    rounded = magnitude.clone()
    shift = source_mantissa - fmt.mantissa_bits
    if shift:  # add just under half a unit, plus the kept lowest bit (ties to even), then cut
        rounded.add_((rounded >> shift) & 1).add_((1 << (shift - 1)) - 1).bitwise_and_(~((1 << shift) - 1))
    overflow_bits = bits_of(math.inf) if fmt.has_inf else bits_of(math.nan)
    rounded.masked_fill_(rounded > bits_of(fmt.max), overflow_bits)
    rounded.bitwise_or_(sign)
    result = torch.where(is_nan, bits, rounded).view(source.dtype)
    if fmt.min_normal > source_min_normal:  # below the format's normals the spacing is fixed
        small = torch.nonzero(magnitude < bits_of(fmt.min_normal)).squeeze(1)
        if small.numel():
            result[small] = torch.round(flat[small] / fmt.min_subnormal) * fmt.min_subnormal
    return result.reshape(x.shape).to(x.dtype)


def finite_or_zero(t: torch.Tensor) -> torch.Tensor:
    """t with NaN and +-inf read as 0: the one place mpx drops non-finite values from a bound or a history."""
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))
