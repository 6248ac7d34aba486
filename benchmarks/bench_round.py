"""Format.round throughput vs torch's own `.to(dtype).to(torch.float32)` round trip, measured in the same run.

Prints one row per format with the ratio torch_time / mpx_time (>= 0.5 is the bar; 1.0 means as fast as the
cast), plus the exact bit-level path (float64 inputs, single rounding) as an extra line. Exits 1 if a ratio
is below the bar.

    python benchmarks/bench_round.py [--n 16777216] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

import mpx

BAR = 0.5
FORMATS = ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median times of two functions run alternately, so that machine noise hits both alike."""
    first(), second()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        a.append(seconds(first))
        b.append(seconds(second))
    return statistics.median(a), statistics.median(b)


def inputs(n: int, fmt: mpx.Format) -> torch.Tensor:
    """Normal values spread over the format's range, a few past max, some below its normals."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, generator=generator) * (fmt.max / 16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16 * 2**20, help="number of fp32 values (default 16M)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {args.n:,} fp32 values, median of {args.repeats}")
    print(f"{'format':<10} {'torch round trip':>17} {'mpx round':>10} {'ratio':>6}")
    worst = float("inf")
    for name in FORMATS:
        fmt = mpx.format(name)
        x = inputs(args.n, fmt)
        torch_time, mpx_time = interleaved_medians(
            lambda x=x, fmt=fmt: x.to(fmt.torch_dtype).to(torch.float32),
            lambda x=x, fmt=fmt: fmt.round(x),
            args.repeats,
        )
        ratio = torch_time / mpx_time
        worst = min(worst, ratio)
        print(f"{name:<10} {torch_time * 1e3:>14.1f} ms {mpx_time * 1e3:>7.1f} ms {ratio:>6.2f}")
    x64 = inputs(args.n, mpx.format("fp16")).double()
    fp32_time, exact_time = interleaved_medians(
        lambda: x64.float().to(torch.float16).double(), lambda: mpx.format("fp16").round(x64), max(3, args.repeats // 2)
    )
    print(
        f"extra: float64 -> fp16 exact bit path (single rounding) {exact_time * 1e3:.0f} ms; torch's double-rounding "
        f"cast via fp32 {fp32_time * 1e3:.0f} ms; ratio {fp32_time / exact_time:.2f} (no bar: torch has no exact path)"
    )
    print(f"worst ratio {worst:.2f} (bar {BAR}): {'ok' if worst >= BAR else 'BELOW THE BAR'}")
    return 0 if worst >= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
