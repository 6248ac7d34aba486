"""Training-step time: mpx.MixedPrecision vs torch.autocast + torch.amp.GradScaler, same model, same run.

GPT-style block stacks: a large compute-bound one and a small launch-bound one; steps interleaved.
Prints mpx / torch.amp (targets: <= 1.0 large, <= 0.95 small) and bf16-mixed vs fp32 on the large model
(target >= 2.5x). Needs a CUDA GPU; `--device cpu --tiny` is a smoke run of the script itself.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from mpx.training.losses import mse_loss
from mpx.training.trainer import MixedPrecision

# layers, width, heads, sequence, batch
SIZES = {"large": (24, 2048, 16, 1024, 8), "small": (2, 256, 4, 64, 8), "tiny": (1, 64, 2, 16, 2)}


def gpt(layers: int, width: int, heads: int, device: str) -> torch.nn.Module:
    block = torch.nn.TransformerEncoderLayer(
        width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
    )
    return torch.nn.Sequential(*[copy.deepcopy(block) for _ in range(layers)], torch.nn.LayerNorm(width)).to(device)


def timed(step, device: str, steps: int) -> float:
    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def steps_for(size: str, device: str, precision: str):
    layers, width, heads, seq, batch = SIZES[size]
    torch.manual_seed(0)
    x, y = torch.randn(batch, seq, width, device=device), torch.randn(batch, seq, width, device=device)
    dtype = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(precision)
    fused = {"fused": True} if device == "cuda" else {}
    model_a, model_b = gpt(layers, width, heads, device), gpt(layers, width, heads, device)
    opt_a = torch.optim.AdamW(model_a.parameters(), lr=1e-4, **fused)
    mp = MixedPrecision(model_a, opt_a, backend=device, policy=precision)

    def mpx_step():
        mp.zero_grad()
        with mp.autocast():
            out = model_a(x)
        mp.backward(mse_loss(out, y))
        mp.step()

    opt_b = torch.optim.AdamW(model_b.parameters(), lr=1e-4, **fused)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16-mixed")

    def amp_step():
        opt_b.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model_b(x)
        scaler.scale(torch.nn.functional.mse_loss(out.float(), y)).backward()
        scaler.step(opt_b)
        scaler.update()

    return mpx_step, amp_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="smoke run with a tiny model")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_cuda_step needs a CUDA GPU (none visible); --device cpu --tiny smoke-runs it")
    if args.device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    sizes = ["tiny"] if args.tiny else ["large", "small"]
    for size in sizes:
        for precision in ("fp16-mixed", "bf16-mixed"):
            mpx_step, amp_step = steps_for(size, args.device, precision)
            mpx_times, amp_times = [], []
            for _ in range(args.rounds):  # interleaved rounds: drift hits both sides alike
                mpx_times.append(timed(mpx_step, args.device, args.steps))
                amp_times.append(timed(amp_step, args.device, args.steps))
            a, b = min(mpx_times), min(amp_times)
            print(f"{size:5s} {precision:10s} mpx {a * 1e3:8.2f} ms  torch.amp {b * 1e3:8.2f} ms  ratio {a / b:.3f}")
    size = sizes[0]
    bf16_step, _ = steps_for(size, args.device, "bf16-mixed")
    fp32_step, _ = steps_for(size, args.device, "fp32")
    bf16, fp32 = timed(bf16_step, args.device, args.steps), timed(fp32_step, args.device, args.steps)
    print(f"{size:5s} bf16-mixed vs fp32 (mpx): {fp32 * 1e3:.2f} ms / {bf16 * 1e3:.2f} ms = {fp32 / bf16:.2f}x")


if __name__ == "__main__":
    main()
