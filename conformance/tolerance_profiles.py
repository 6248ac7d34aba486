"""What the industry accepts: published max-ULP limits of fp32 math, as `--tolerance strict|opencl|cuda` profiles.

Sources (single precision):
- opencl: The OpenCL Specification 1.2, section 7.4 "Relative Error as ULPs", table 7.1 (ULP values for single
  precision built-in math functions), https://www.khronos.org/registry/OpenCL/specs/opencl-1.2.pdf#page=319 .
  Its ULP is measured against the infinitely precise result (a correctly rounded result is within 0.5 ULP), so
  a limit applies to an error against the float64 reference ("exact" metric).
- cuda: CUDA C++ Programming Guide, appendix "Mathematical Functions", table "Single-Precision Mathematical
  Standard Library Functions with Maximum ULP Error", https://docs.nvidia.com/cuda/cuda-c-programming-guide/
  index.html#standard-functions (also linked from the CUDA Math API, group__CUDA__MATH__SINGLE). Its error is
  "the absolute value of the difference in ulps between a correctly rounded single-precision result and the
  result returned" ("rounded" metric); NVIDIA states the bounds are measured, not guaranteed.
  Both tables side by side: intel/llvm sycl/doc/design/cuda/cuda-vs-opencl-math-builtin-precisions.md.
- strict: every result correctly rounded (0 ULP from the correctly rounded result), every op.

The element-wise ops map onto those functions: a + b -> x+y, a * b -> x*y, exp -> exp, sqrt -> sqrt; the
backward of exp (g * e**x with g = 1) is exp, of sqrt (g / (2 sqrt x)) is rsqrt scaled by an exact 0.5.
max(x, 0), where and the gradients of +, *, max and where are selections or single products: correctly rounded
in every table (OpenCL fmax 0 ulp, x*y correctly rounded). gelu and silu are compositions no table lists:
their limit is None ("no published limit"), reported as such, never invented.
The fp32 limits are applied in ULPs of each format measured (fp16, bf16 too), as JAX's tables measure ULPs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from mpx.errors import ConformanceError

Metric = Literal["exact", "rounded"]
CORRECTLY_ROUNDED = 0.0  # a limit of 0 ULP from the correctly rounded result

# (op, pass) -> the published function whose limit applies
FUNCTION_OF: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("add", "forward"): "x+y",
        ("add", "backward"): "copy",
        ("mul", "forward"): "x*y",
        ("mul", "backward"): "x*y",
        ("relu", "forward"): "fmax",
        ("relu", "backward"): "select",
        ("where", "forward"): "select",
        ("where", "backward"): "select",
        ("exp", "forward"): "exp",
        ("exp", "backward"): "exp",
        ("sqrt", "forward"): "sqrt",
        ("sqrt", "backward"): "rsqrt",
    }
)


@dataclass(frozen=True)
class Profile:
    """A named set of max-ULP limits per function, the metric they are stated in and where they come from."""

    name: str
    metric: Metric
    limits: Mapping[str, float]
    source: str
    strict: bool = False

    def limit(self, op: str, pass_: str) -> float | None:
        """The largest error this profile accepts for `op`'s `pass_`, or None where no limit is published."""
        if self.strict:
            return CORRECTLY_ROUNDED
        function = FUNCTION_OF.get((op, pass_))
        return None if function is None else self.limits.get(function)

    def describe(self, op: str, pass_: str) -> str:
        """The limit in words: '3 ULP (exp, OpenCL 1.2)' or 'no published limit'."""
        limit = self.limit(op, pass_)
        if limit is None:
            return "no published limit"
        function = "every op" if self.strict else FUNCTION_OF[(op, pass_)]
        if limit == CORRECTLY_ROUNDED:
            return f"correctly rounded ({function}, {self.name})"
        return f"{limit:g} ULP ({function}, {self.name})"


_EXACT_OPS = {"copy": 0.0, "select": 0.0, "fmax": 0.0}
PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "strict": Profile("strict", "rounded", MappingProxyType({}), "every result correctly rounded", strict=True),
        "opencl": Profile(
            "opencl",
            "exact",
            # OpenCL 1.2 table 7.1: x+y, x*y correctly rounded; exp <= 3, sqrt <= 3, rsqrt <= 2 ULP; fmax 0 ULP
            MappingProxyType({**_EXACT_OPS, "x+y": 0.0, "x*y": 0.0, "exp": 3.0, "sqrt": 3.0, "rsqrt": 2.0}),
            "OpenCL 1.2 specification, section 7.4, table 7.1 (single precision)",
        ),
        "cuda": Profile(
            "cuda",
            "rounded",
            # CUDA programming guide: x+y, x*y 0 (IEEE round-to-nearest-even); expf 2; sqrtf 0 with -prec-sqrt=true
            # (nvcc's default); rsqrtf 2
            MappingProxyType({**_EXACT_OPS, "x+y": 0.0, "x*y": 0.0, "exp": 2.0, "sqrt": 0.0, "rsqrt": 2.0}),
            "CUDA C++ Programming Guide, Mathematical Functions appendix (single precision, max ULP error)",
        ),
    }
)
DEFAULT_PROFILE = "opencl"


def get_profile(name: str | Profile) -> Profile:
    """The profile called `name` (strict, opencl or cuda)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ConformanceError(f"unknown tolerance profile {name!r}; profiles: {', '.join(PROFILES)}")
    return PROFILES[name]


def within(profile: Profile, op: str, pass_: str, max_ulp: float, max_ulp_exact: float) -> bool | None:
    """Whether errors this large are within the profile's limit for op/pass (None: no published limit).

    max_ulp: largest distance from the correctly rounded result (the 'rounded' metric, CUDA's);
    max_ulp_exact: largest error against the float64 value (the 'exact' metric, OpenCL's).
    A limit of 0 ("correctly rounded", "0 ulp") is checked against the correctly rounded result in every profile.
    """
    limit = profile.limit(op, pass_)
    if limit is None:
        return None
    exact = profile.metric == "exact" and limit != CORRECTLY_ROUNDED
    return (max_ulp_exact if exact else max_ulp) <= limit
