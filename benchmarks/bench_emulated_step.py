"""Emulated fp16-mixed training step time / plain fp32 eager step time on the CPU (target <= 1.5 each).

A tiny GPT (nn.TransformerEncoderLayer blocks, causal mask) and an MLP, trained with SGD; prints the ratios.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
import torch.nn as nn

import mpx


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


def _step_time(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[..., torch.Tensor],
    autocast: Callable[[], contextlib.AbstractContextManager[None]],
    steps: int = 30,
) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    inputs, targets = batch

    def step() -> None:
        with autocast():
            loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    torch.manual_seed(0)
    backend = mpx.get_backend("cpu")
    emulated = lambda: backend.autocast("fp16-mixed")  # noqa: E731
    plain = contextlib.nullcontext
    gpt_batch = (torch.randint(0, 64, (8, 32)), torch.randint(0, 64, (8, 32)))
    gpt_loss = lambda out, y: nn.functional.cross_entropy(out.flatten(0, 1), y.flatten())  # noqa: E731
    mlp = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 10))
    mlp_batch = (torch.randn(64, 256), torch.randint(0, 10, (64,)))
    for name, model, batch, loss_fn in [
        ("tiny GPT", TinyGPT(), gpt_batch, gpt_loss),
        ("MLP", mlp, mlp_batch, nn.functional.cross_entropy),
    ]:
        fp32 = min(_step_time(model, batch, loss_fn, plain) for _ in range(3))
        emulated_time = min(_step_time(model, batch, loss_fn, emulated) for _ in range(3))
        print(
            f"{name:9s} fp32 {fp32 * 1e3:7.2f} ms  emulated fp16-mixed {emulated_time * 1e3:7.2f} ms  "
            f"ratio {emulated_time / fp32:5.2f} (target <= 1.5)"
        )


if __name__ == "__main__":
    main()
