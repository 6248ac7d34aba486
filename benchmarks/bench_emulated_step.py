"""Emulated fp16-mixed training step time / plain fp32 eager step time on the CPU (target <= 1.5 each).

A tiny GPT (nn.TransformerEncoderLayer blocks, causal mask) and an MLP, trained with SGD. The configurations
run interleaved, in rounds of a few steps each, and each ratio is the median over the rounds of (its median
step time / the fp32 median step time of the same round), so that a load change hits both sides alike.
The fp32 baseline is plain eager fp32 training without any autocast. Also printed: the time of a small
F.linear under a plain torch.autocast with mpx's AutocastCPU kernels registered (they then call torch's
own) over the same call with torch's kernels alone, the cost of the kernels staying registered (~1.00).

    python benchmarks/bench_emulated_step.py [--rounds 15] [--steps 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn

import mpx
from mpx.backends.cpu.autocast import KERNELS


class TinyGPT(nn.Module):
    """Embedding, a few causal TransformerEncoderLayer blocks and a head."""

    def __init__(self, vocab: int = 64, width: int = 64, layers: int = 2, context: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        block = nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(tokens), mask=self.mask, is_causal=True))


Context = Callable[[], contextlib.AbstractContextManager[None]]


def _stepper(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], loss_fn: Callable[..., torch.Tensor]):  # noqa: ANN202
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    inputs, targets = batch

    def step(autocast: Context) -> None:
        with autocast():
            loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def _round(step: Callable[[Context], None], autocast: Context, steps: int) -> float:
    """The median step time of `steps` steps."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step(autocast)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ratios(
    step: Callable[[Context], None], configs: dict[str, Context], rounds: int, steps: int
) -> dict[str, tuple[float, float]]:
    """Per config: (median step time, median over rounds of its time / the fp32 time of the round)."""
    for autocast in configs.values():  # warm up every path
        _round(step, autocast, 3)
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, autocast in configs.items():
            times[name].append(_round(step, autocast, steps))
    return {
        name: (statistics.median(t), statistics.median(a / b for a, b in zip(t, times["fp32"], strict=True)))
        for name, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5)
    options = parser.parse_args()
    torch.manual_seed(0)
    backend = mpx.get_backend("cpu")
    configs = {"fp32": contextlib.nullcontext, "emulated": lambda: backend.autocast("fp16-mixed")}
    gpt_batch = (torch.randint(0, 64, (8, 32)), torch.randint(0, 64, (8, 32)))
    gpt_loss = lambda out, y: nn.functional.cross_entropy(out.flatten(0, 1), y.flatten())  # noqa: E731
    mlp = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10))
    mlp_batch = (torch.randn(64, 256), torch.randint(0, 10, (64,)))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {options.rounds} rounds x {options.steps} steps"
    )
    for name, model, batch, loss_fn in [
        ("tiny GPT", TinyGPT(), gpt_batch, gpt_loss),
        ("MLP", mlp, mlp_batch, nn.functional.cross_entropy),
    ]:
        result = _ratios(_stepper(model, batch, loss_fn), configs, options.rounds, options.steps)
        (fp32, _), (emulated, ratio) = result["fp32"], result["emulated"]
        print(
            f"{name:9s} fp32 {fp32 * 1e3:6.2f} ms  emulated fp16-mixed {emulated * 1e3:6.2f} ms  "
            f"ratio {ratio:4.2f} (target <= 1.5)"
        )
    torch_only, registered = _off_path_call_times(options.rounds)
    print(
        f"off path: F.linear under torch.autocast(bf16) {torch_only * 1e6:5.1f} us with torch's kernels, "
        f"{registered * 1e6:5.1f} us with mpx's registered: ratio {registered / torch_only:4.2f}"
    )


def _off_path_call_times(rounds: int, calls: int = 2000) -> tuple[float, float]:
    """Median time of one small F.linear under torch.autocast: torch's kernels alone, then mpx's registered."""
    x, weight = torch.randn(8, 16), torch.randn(16, 16)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for registered in (False, True):
            KERNELS.register() if registered else KERNELS.unregister()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                start = time.perf_counter()
                for _ in range(calls):
                    nn.functional.linear(x, weight)
                times[registered].append((time.perf_counter() - start) / calls)
    return statistics.median(times[False]), statistics.median(times[True])


if __name__ == "__main__":
    main()
