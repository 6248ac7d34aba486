"""Input generators: float64 values already representable in the format they will be stored in."""

from __future__ import annotations

import torch

from ..formats import Format
from .spec import InputClass

LONG = 4096  # length of the reductions in the long-reduction input class


def normal(fmt: Format, shape: tuple[int, ...], generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """Standard-normal values times `scale`, rounded to `fmt`."""
    return fmt.round(torch.randn(shape, generator=generator, dtype=torch.float64) * scale)


def uniform(fmt: Format, shape: tuple[int, ...], generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    """Uniform values in [low, high), rounded to `fmt`."""
    return fmt.round(torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low)


def special_values(fmt: Format, large: float | None = None) -> torch.Tensor:
    """The values a special case plants: zeros, subnormals, the smallest normal, large values, +-inf, NaN.

    `large` replaces +-max for ops that accumulate in fp32 (where two near-max terms would overflow the
    accumulator on the way to a finite result, which the float64 reference cannot model).
    """
    big = fmt.max if large is None else min(fmt.max, large)
    values = [
        0.0,
        -0.0,
        fmt.min_subnormal,
        -3 * fmt.min_subnormal,
        fmt.min_normal - fmt.min_subnormal,
        fmt.min_normal,
        big,
        -big,
        big * (1 - fmt.eps / 2) if large is None else big / 2,
        float("nan"),
    ]
    if fmt.has_inf:
        values += [float("inf"), float("-inf")]
    return fmt.round(torch.tensor(values, dtype=torch.float64))


def ties(fmt: Format) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (a, b) of `fmt` values whose exact sum lies halfway between two `fmt` values (both directions)."""
    half = fmt.eps / 2
    a = torch.tensor([1.0, 1.0 + fmt.eps, -1.0, 2.0, 1.0 + 3 * fmt.eps], dtype=torch.float64)
    b = torch.tensor([half, half, -half, 2 * half, half], dtype=torch.float64)
    return fmt.round(a), fmt.round(b)


def plant(values: torch.Tensor, specials: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`values` with `specials` written at distinct random positions (as many as fit)."""
    flat = values.clone().reshape(-1)
    count = min(flat.numel(), specials.numel())
    positions = torch.randperm(flat.numel(), generator=generator)[:count]
    flat[positions] = specials[:count]
    return flat.reshape(values.shape)


def with_specials(
    fmt: Format, shape: tuple[int, ...], generator: torch.Generator, large: float | None = None, scale: float = 1.0
) -> torch.Tensor:
    """Normal values with every special value of `fmt` planted among them."""
    return plant(normal(fmt, shape, generator, scale), special_values(fmt, large), generator)


def accumulator_safe_large(fmt: Format) -> float:
    """A large value whose products and sums of a few thousand stay inside fp32's range."""
    return min(fmt.max, 2.0**48)


def gemm_operand(
    fmt: Format, shape: tuple[int, ...], input_class: InputClass, generator: torch.Generator
) -> torch.Tensor:
    """A GEMM operand: normal values, or with specials whose products and sums stay inside fp32's range."""
    if input_class == "special":
        return with_specials(fmt, shape, generator, large=accumulator_safe_large(fmt))
    if input_class.startswith("accumulation-"):
        return positive(fmt, shape, generator)
    return normal(fmt, shape, generator)


def just_over(fmt: Format) -> torch.Tensor:
    """[max, 0.75 ulp(max)]: their exact sum overflows fmt, yet (narrower than fp32) stays finite in fp32."""
    top = torch.tensor(fmt.max, dtype=torch.float64)
    return torch.stack([top, 0.75 * fmt.ulp(top)])


def overflow_rows(fmt: Format, rows: int, length: int) -> torch.Tensor:
    """Rows whose sums overflow fmt: just over max, far over -max, far over max, just over -max, ... (uncapped).

    Summed with weights of one, every order of the sum overflows the same way: the far rows overflow even
    an fp32 accumulator, the near ones only the format (where it is narrower than fp32): a backend that
    saturates only finite overflow, or only overflow of its accumulator, gets one kind wrong.
    """
    out = torch.zeros(rows, length, dtype=torch.float64)
    for row in range(rows):
        kind = row % 4  # 0: +just over, 1: -far over, 2: +far over, 3: -just over
        sign = 1.0 if kind in (0, 2) else -1.0
        if kind in (0, 3):
            out[row, :2] = sign * just_over(fmt)
        else:
            out[row] = sign * fmt.max
    return out


def alternating(count: int) -> torch.Tensor:
    """+1, -1, +1, ...: overflow to both infinities in one case."""
    return 1 - 2 * (torch.arange(count) % 2)


def positive(fmt: Format, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """|standard normal| values rounded to `fmt`: sums of them cannot cancel, so |sum| = sum(|terms|)."""
    return fmt.round(torch.randn(shape, generator=generator, dtype=torch.float64).abs())


def accumulation_length(input_class: InputClass) -> int:
    """N of an accumulation-N input class."""
    return int(input_class.rpartition("-")[2])
