"""What an op is to mpx: its arguments, float64 reference, tolerance and input generator."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..errors import OpError
from ..formats import FP32, Format
from ..policy import AutocastClass, gemm_output_format
from .error_model import Magnitude

Pass = Literal["forward", "backward"]
OpKind = Literal["precision", "loss", "model"]
# normal: well-scaled random values; special: subnormals, near max, +-inf, NaN, rounding ties;
# odd-shape: sizes that are not multiples of vector widths; long-reduction: reductions over >= 4096 terms.
InputClass = Literal["normal", "special", "odd-shape", "long-reduction"]
INPUT_CLASSES: tuple[InputClass, ...] = ("normal", "special", "odd-shape", "long-reduction")

# The role of an argument decides its storage dtype in a case:
#   input: the case's format; fp32: always fp32 (master weights, moments, scales, found_inf);
#   index: int64; mask: bool.
ArgRole = Literal["input", "fp32", "index", "mask"]


@dataclass(frozen=True)
class Arg:
    """One argument of an op."""

    name: str
    role: ArgRole = "input"
    differentiable: bool = True

    def storage_dtype(self, fmt: Format) -> torch.dtype:
        """The dtype this argument is stored in for a case in `fmt` (see ArgRole)."""
        return {"input": fmt.torch_dtype, "fp32": torch.float32, "index": torch.int64, "mask": torch.bool}[self.role]


@dataclass(frozen=True)
class Tolerance:
    """Allowed error, in ULPs of the output format (0: bit-exact).

    accumulation=True adds the bound of a length-n sum accumulated in fp32,
    n * 2**-24 * sum(|terms|), with sum(|terms|) from the op's `magnitude` (see error_model.py).
    """

    ulps: float = 0.0
    accumulation: bool = False

    def __post_init__(self) -> None:
        if self.ulps < 0:
            raise OpError(f"a tolerance cannot be negative ({self.ulps} ULPs)")


EXACT = Tolerance(0.0)
# one ULP of the output plus the fp32 accumulation bound: ops that reduce or chain fp32 roundings
ACCUMULATED = Tolerance(1.0, accumulation=True)

Reference = Callable[..., tuple[torch.Tensor, ...]]
InputMaker = Callable[[Format, InputClass, torch.Generator], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class OpSpec:
    """An op every backend is measured on.

    `reference(*inputs, **attrs)` is float64 torch math returning a tuple of outputs; the backward
    reference is autograd through it. `make_inputs(fmt, input_class, generator)` returns float64
    tensors already representable in each argument's format (int64 / bool for index / mask args).
    """

    name: str
    kind: OpKind
    args: tuple[Arg, ...]
    reference: Reference = field(repr=False)
    make_inputs: InputMaker = field(repr=False)
    tolerance: Tolerance = EXACT
    autocast: AutocastClass = "promote"
    has_backward: bool = True
    input_classes: tuple[InputClass, ...] = ("normal", "special")
    attrs: Mapping[str, Any] = field(default_factory=dict)
    magnitude: Magnitude | None = field(default=None, repr=False)
    # what an fp8 GEMM writes; None: mpx's rule, policy.gemm_output_format (bf16)
    fp8_output: Format | None = None
    doc: str = ""
    # one role per output: "input" outputs are in output_format(fmt), "fp32" outputs always fp32
    # (master weights and moments of the optimizer updates, the found_inf flag, losses)
    output_roles: tuple[ArgRole, ...] = ("input",)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise OpError(f"op name {self.name!r} must be a non-empty identifier")
        if self.tolerance.accumulation and self.magnitude is None:
            raise OpError(f"op {self.name!r} has an accumulation tolerance but no magnitude function")
        if not self.output_roles or set(self.output_roles) - {"input", "fp32"}:
            raise OpError(f"op {self.name!r}: output_roles must be a non-empty tuple of 'input' / 'fp32'")
        unknown = set(self.input_classes) - set(INPUT_CLASSES)
        if unknown:
            raise OpError(f"op {self.name!r}: unknown input classes {sorted(unknown)}; known: {INPUT_CLASSES}")

    @property
    def arity(self) -> int:
        """The number of arguments."""
        return len(self.args)

    @property
    def differentiable_args(self) -> tuple[int, ...]:
        """Indices of the float args a backward pass returns gradients for."""
        return tuple(i for i, a in enumerate(self.args) if a.differentiable and a.role in ("input", "fp32"))

    def output_format(self, fmt: Format) -> Format:
        """Outputs are in the case's format, except fp8 GEMMs, which write bf16 (or `fp8_output` when given)."""
        if self.autocast != "lowp":
            return fmt
        if fmt.is_fp8 and self.fp8_output is not None:
            return self.fp8_output
        return gemm_output_format(fmt)

    def output_formats(self, fmt: Format) -> tuple[Format, ...]:
        """The format of each output in a case of format `fmt` (see output_roles)."""
        return tuple(FP32 if role == "fp32" else self.output_format(fmt) for role in self.output_roles)

    def supports_format(self, fmt: Format) -> bool:
        """fp8 is a GEMM format (and a cast target): only lowp ops and precision ops take it."""
        return not fmt.is_fp8 or self.autocast == "lowp" or self.kind == "precision"

    def to_storage(self, fmt: Format, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The generated float64 inputs in the dtypes a backend receives them in."""
        if len(inputs) != self.arity:
            names = ", ".join(a.name for a in self.args)
            raise OpError(f"op {self.name!r} takes {self.arity} inputs ({names}), got {len(inputs)}")
        return tuple(t.to(arg.storage_dtype(fmt)) for arg, t in zip(self.args, inputs, strict=True))
