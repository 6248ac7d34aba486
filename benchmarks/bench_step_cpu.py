"""Step time of mpx.MixedPrecision vs the same loop with torch.autocast + torch.amp.GradScaler, on the CPU.

Same model, same data, same optimizer (Adam), same policy (fp16-mixed), interleaved rounds in one run;
prints the median step-time ratio (target <= 1.0 with native autocast) and, as information, the ratio
of the emulated cpu backend. Then bytes per parameter measured from the real tensors.

    python benchmarks/bench_step_cpu.py [--rounds 9] [--steps 10] [--width 128] [--batch 128] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import mpx

POLICY = "fp16-mixed"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU time, for a loaded machine
clock = time.perf_counter


def make_model(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(width, 4 * width),
        torch.nn.GELU(),
        torch.nn.Linear(4 * width, width),
        torch.nn.GELU(),
        torch.nn.Linear(width, 1),
    )


def torch_amp_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cpu")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(x)
        loss = torch.nn.functional.mse_loss(out.float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def mpx_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, backend: mpx.Backend):
    trainer = mpx.MixedPrecision(model, torch.optim.Adam(model.parameters(), lr=1e-4), backend, POLICY)

    def step() -> None:
        trainer.zero_grad()
        with trainer.autocast():
            out = model(x)
        trainer.backward(mpx.mse_loss(out, y))
        trainer.step()

    return step


def time_steps(step, steps: int) -> float:
    start = clock()
    for _ in range(steps):
        step()
    return (clock() - start) / steps


def optimizer_step_only(width: int, repeats: int = 200) -> tuple[float, float]:
    """Median time of GradScaler.step + update vs MixedPrecision.step on the same fp32 gradients."""
    torch.manual_seed(2)
    ours, theirs = make_model(width), make_model(width)
    grads = [torch.randn_like(p) for p in ours.parameters()]
    optimizer, scaler = torch.optim.Adam(theirs.parameters(), lr=1e-4), torch.amp.GradScaler("cpu")
    scaler.scale(torch.ones(()))
    trainer = mpx.MixedPrecision(
        ours, torch.optim.Adam(ours.parameters(), lr=1e-4), mpx.get_backend("cpu", native=True), POLICY
    )
    anchor, measured = [], []
    for _ in range(repeats):
        for model in (ours, theirs):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
        start = clock()
        scaler.step(optimizer)
        scaler.update()
        anchor.append(clock() - start)
        start = clock()
        trainer.step()
        measured.append(clock() - start)
    return statistics.median(anchor), statistics.median(measured)


def bytes_report() -> dict[str, float]:
    results = {}
    cases = {
        "fp32 Adam": ("fp32", mpx.StateFormats(), torch.float32),
        "seed recipe (fp32 w, bf16 grads, bf16 m, fp32 v)": ("bf16-mixed", mpx.LEAN_ADAM, torch.float32),
        "classic fp16 + fp32 masters": ("fp16-pure", mpx.StateFormats(), torch.float32),
    }
    for name, (policy, formats, dtype) in cases.items():
        model = make_model(64).to(dtype)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        trainer = mpx.MixedPrecision(model, optimizer, "cpu", policy, state_formats=formats)
        x = torch.randn(8, 64)
        with trainer.autocast():
            out = model(x.to(next(model.parameters()).dtype))
        trainer.backward(mpx.mse_loss(out, torch.zeros_like(out)))
        trainer.step()
        results[name] = mpx.bytes_per_parameter(model, optimizer, trainer)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--clock", choices=CLOCKS, default="wall", help="cpu: process CPU time (a busy machine)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    torch.manual_seed(1)
    x, y = torch.randn(args.batch, args.width), torch.randn(args.batch, 1)
    base = make_model(args.width)
    loops = {
        "torch.autocast + GradScaler": torch_amp_loop(copy.deepcopy(base), x, y),
        "mpx native autocast": mpx_loop(copy.deepcopy(base), x, y, mpx.get_backend("cpu", native=True)),
        "mpx emulated": mpx_loop(copy.deepcopy(base), x, y, mpx.get_backend("cpu")),
    }
    for step in loops.values():  # warm-up
        time_steps(step, 3)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, step in loops.items():
            times[name].append(time_steps(step, args.steps))
    anchor = statistics.median(times["torch.autocast + GradScaler"])
    print(
        f"step time, {POLICY}, MLP width {args.width}, batch {args.batch}, Adam, {torch.get_num_threads()} threads "
        f"(median of {args.rounds} interleaved rounds of {args.steps} steps, {args.clock} clock)"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:30s} {1000 * median:8.3f} ms   ratio vs torch.amp {median / anchor:.3f}")
    native_ratio = statistics.median(times["mpx native autocast"]) / anchor
    print(f"mpx.MixedPrecision / torch.amp (native autocast): {native_ratio:.3f} (target <= 1.0)")
    anchor_step, mpx_step = optimizer_step_only(args.width)
    print(
        f"optimizer step alone: GradScaler.step+update {1000 * anchor_step:.3f} ms, MixedPrecision.step "
        f"{1000 * mpx_step:.3f} ms (ratio {mpx_step / anchor_step:.3f}; information)"
    )
    print("bytes per parameter (weights + grads + masters + optimizer state, measured):")
    for name, value in bytes_report().items():
        print(f"  {name:50s} {value:6.2f}")


if __name__ == "__main__":
    main()
