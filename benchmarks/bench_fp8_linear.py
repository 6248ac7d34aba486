"""Fp8Linear (torch._scaled_mm, delayed scaling) vs bf16 nn.Linear throughput on large GEMMs, same run.

Target on an H100: >= 1.3x. Forward + backward per step. Needs a GPU with compute capability >= 8.9.
"""

from __future__ import annotations

import argparse
import time

import torch

from mpx.fp8 import DelayedScaling, Fp8Linear

SHAPES = [(8192, 8192, 8192), (16384, 8192, 8192), (8192, 8192, 28672)]  # tokens, in, out


def tflops(layer, x, steps: int) -> float:
    def step():
        layer(x).backward(torch.ones((), device=x.device).expand(x.shape[0], layer.out_features))

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return 3 * 2 * x.shape[0] * layer.in_features * layer.out_features / seconds / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_fp8_linear needs a CUDA GPU with compute capability >= 8.9 (none visible here)")
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for tokens, fan_in, fan_out in SHAPES:
        bf16 = torch.nn.Linear(fan_in, fan_out, device="cuda", dtype=torch.bfloat16)
        fp8 = Fp8Linear(fan_in, fan_out, device="cuda", dtype=torch.bfloat16, recipe=DelayedScaling())
        x = torch.randn(tokens, fan_in, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        rates = {"bf16": [], "fp8": []}
        for _ in range(3):  # interleaved
            rates["bf16"].append(tflops(bf16, x, args.steps))
            rates["fp8"].append(tflops(fp8, x, args.steps))
        b, f = max(rates["bf16"]), max(rates["fp8"])
        print(f"{tokens}x{fan_in}x{fan_out}: bf16 {b:7.1f} TFLOP/s  fp8 {f:7.1f} TFLOP/s  fp8/bf16 {f / b:.2f}x")


if __name__ == "__main__":
    main()
