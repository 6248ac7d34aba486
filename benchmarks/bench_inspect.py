"""Step time with the numerics inspector recording every step, and every 10th step, vs the same loop without.

The tiny GPT and the MLP of the conformance model zoo, trained through mpx.MixedPrecision (bf16-mixed) on the
emulated `cpu` backend and on native CPU autocast. Three trainers per case (no inspector, inspect every step,
inspect every 10th step) on identical copies of the model; each round times a block of steps of each, in a
rotating order, and the ratio of a round is its mean step time over the baseline's. Prints the median ratio
over rounds against the issue's bars (every step <= 1.15, every 10th <= 1.03), judged on the CPU time of the
training thread (one torch thread): on a shared machine wall-clock time mostly measures the neighbours; the
wall-clock ratio is printed too.

    python benchmarks/bench_inspect.py [--rounds 15] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import mpx
from mpx.conformance.model_zoo import MODELS

BARS = {1: 1.15, 10: 1.03}


def make_step(spec, model, batch, backend, inspect):
    trainer = mpx.MixedPrecision(
        model, spec.optimizer(list(model.parameters())), backend, "bf16-mixed", inspect=inspect
    )

    def step() -> None:
        trainer.zero_grad()
        with trainer.autocast():
            loss = spec.loss(model, batch)
        trainer.backward(loss)
        trainer.step()

    return step


def block_time(step, steps: int) -> tuple[float, float]:
    """Mean (CPU time of this thread, wall-clock time) of a step over a block of `steps` steps (a multiple of 10,
    so every arm records in the same share of them)."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return (time.thread_time() - cpu) / steps, (time.perf_counter() - wall) / steps


def measure(name: str, native: bool, rounds: int, steps: int) -> dict[int, tuple[float, float]]:
    spec = MODELS[name]
    torch.manual_seed(0)
    model = spec.build()
    batch = spec.data(torch.Generator().manual_seed(0))
    backend = mpx.get_backend("cpu", native=native)
    arms = {0: make_step(spec, copy.deepcopy(model), batch, backend, False)}
    for every in BARS:
        arms[every] = make_step(spec, copy.deepcopy(model), batch, backend, {"every": every})
    for step in arms.values():  # warm up: first-call costs and caches
        for _ in range(5):
            step()
    ratios: dict[int, list[tuple[float, float]]] = {every: [] for every in BARS}
    order = list(arms)
    for index in range(rounds):
        rotated = order[index % len(order) :] + order[: index % len(order)]
        times = {arm: block_time(arms[arm], steps) for arm in rotated}
        for every in BARS:
            ratios[every].append((times[every][0] / times[0][0], times[every][1] / times[0][1]))
    return {
        every: (statistics.median(r[0] for r in values), statistics.median(r[1] for r in values))
        for every, values in ratios.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20, help="steps per arm per round (a multiple of 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadier on busy machines)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps per arm")
    for name in ("gpt", "mlp"):
        for native in (False, True):
            label = f"{name} on {'native cpu' if native else 'cpu (emulated)'}"
            for every, (cpu, wall) in measure(name, native, args.rounds, args.steps).items():
                bar = BARS[every]
                verdict = "ok" if cpu <= bar else "OVER"
                print(
                    f"{label:28s} inspect every {every:2d} step(s) / without: {cpu:.3f} CPU time, {wall:.3f} wall"
                    f" (bar <= {bar} on CPU time) {verdict}"
                )


if __name__ == "__main__":
    main()
