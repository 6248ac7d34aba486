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
# pos-inf / neg-inf / nan: normal inputs with one +inf / -inf / NaN (each alone: one cannot hide another);
# extremes: the special class without its non-finite values (+-max, +-min subnormal, signed zeros);
# accumulation-N: reductions of N positive terms (see tolerance.py: fp16/bf16 running sums cannot pass);
# overflow: inputs whose exact result overflows the format (uncapped); sequence: optimizer steps in a row.
InputClass = Literal[
    "normal",
    "special",
    "odd-shape",
    "long-reduction",
    "pos-inf",
    "neg-inf",
    "nan",
    "extremes",
    "accumulation-128",
    "accumulation-1024",
    "accumulation-16384",
    "overflow",
    "sequence",
]
BASIC_CLASSES: tuple[InputClass, ...] = ("normal", "special", "odd-shape", "long-reduction")
NONFINITE_CLASSES: tuple[InputClass, ...] = ("pos-inf", "neg-inf", "nan")
# made from an op's own normal / special inputs (derived_inputs): an op that lists them needs no code of its own
SPECIAL_VALUE_CLASSES: tuple[InputClass, ...] = (*NONFINITE_CLASSES, "extremes")
ACCUMULATION_CLASSES: tuple[InputClass, ...] = ("accumulation-128", "accumulation-1024", "accumulation-16384")
# classes whose cases have no backward pass: an overflowed forward has no finite gradient to compare, an
# optimizer sequence none at all, the backward products of the accumulation probes reduce over their short
# dimensions (long-reduction measures long backward sums), and the special values one at a time keep the run
# short (the special class plants them all in backward cases)
FORWARD_ONLY_CLASSES: frozenset[str] = frozenset(
    {"overflow", "sequence", *ACCUMULATION_CLASSES, *SPECIAL_VALUE_CLASSES}
)
INPUT_CLASSES: tuple[InputClass, ...] = (
    *BASIC_CLASSES,
    *SPECIAL_VALUE_CLASSES,
    *ACCUMULATION_CLASSES,
    "overflow",
    "sequence",
)

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
        derived = set(self.input_classes) & set(SPECIAL_VALUE_CLASSES)
        if derived and not isinstance(self.make_inputs, _DerivedClasses):
            object.__setattr__(self, "make_inputs", _DerivedClasses(self.make_inputs, self.args))

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

    def defines(self, fmt: Format, pass_: str, input_class: str) -> bool:
        """Whether the op has a case of this format, pass and input class.

        FORWARD_ONLY_CLASSES have no backward case; +-inf cases need an argument format with infinities (e4m3
        has none); overflow needs an output that can overflow (fp8 GEMMs write bf16).
        """
        if input_class not in self.input_classes or not self.supports_format(fmt):
            return False
        if pass_ == "backward" and (not self.has_backward or input_class in FORWARD_ONLY_CLASSES):
            return False
        if input_class in ("pos-inf", "neg-inf"):
            arg = self.args[special_value_arg(self.args)]
            return (FP32 if arg.role == "fp32" else fmt).has_inf
        return input_class != "overflow" or self.output_format(fmt) == fmt

    def to_storage(self, fmt: Format, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The generated float64 inputs in the dtypes a backend receives them in."""
        if len(inputs) != self.arity:
            names = ", ".join(a.name for a in self.args)
            raise OpError(f"op {self.name!r} takes {self.arity} inputs ({names}), got {len(inputs)}")
        return tuple(t.to(arg.storage_dtype(fmt)) for arg, t in zip(self.args, inputs, strict=True))


def special_value_arg(args: tuple[Arg, ...]) -> int:
    """The argument the pos-inf / neg-inf / nan classes plant into: the first in the case's format, else fp32."""
    for roles in (("input",), ("fp32",)):
        for index, arg in enumerate(args):
            if arg.role in roles:
                return index
    return 0


_PLANTED = {"pos-inf": float("inf"), "neg-inf": float("-inf"), "nan": float("nan")}


def derived_inputs(
    make_inputs: InputMaker, args: tuple[Arg, ...], fmt: Format, input_class: InputClass, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Inputs of the classes every op gets from its own: pos-inf / neg-inf / nan and extremes.

    pos-inf, neg-inf, nan: the op's normal inputs with that one value at a random position of one argument
    (special_value_arg), so no other special value can hide how it is handled. extremes: the op's special
    inputs with every non-finite value replaced by 1 (+-max, subnormals, signed zeros stay).
    """
    if input_class in NONFINITE_CLASSES:
        index = special_value_arg(args)
        target = FP32 if args[index].role == "fp32" else fmt
        if input_class != "nan" and not target.has_inf:
            raise OpError(f"{target.name} has no infinities: there are no {input_class} inputs in it")
        values = list(make_inputs(fmt, "normal", generator))
        flat = values[index].clone().reshape(-1)
        flat[int(torch.randint(0, flat.numel(), (), generator=generator))] = _PLANTED[input_class]
        values[index] = flat.reshape(values[index].shape)
        return tuple(values)
    values = make_inputs(fmt, "special", generator)
    return tuple(torch.where(torch.isfinite(t), t, torch.ones_like(t)) if t.is_floating_point() else t for t in values)


class _DerivedClasses:
    """An op's input maker that also makes the special-value classes from its own (derived_inputs)."""

    def __init__(self, make_inputs: InputMaker, args: tuple[Arg, ...]) -> None:
        self.base, self.args = make_inputs, args

    def __call__(self, fmt: Format, input_class: InputClass, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        if input_class not in SPECIAL_VALUE_CLASSES:
            return self.base(fmt, input_class, generator)
        return derived_inputs(self.base, self.args, fmt, input_class, generator)
