"""The small real models of the model-level cases, each with its deterministic synthetic task (no downloads).

Sizes are tiny on purpose: every model trains 40 full-batch steps in well under a second on one CPU thread,
yet each reaches the layers a scenario names (GEMMs, convolutions, batch norm, attention, LayerNorm, GELU,
an LSTM, embeddings, cross-entropy). Tasks are learnable but not solved within the steps, so the final loss
stays well above zero and a ratio to the fp32 run's final loss means something.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
CLASSES, VOCAB, SEQUENCE = 4, 16, 12


class MLP(nn.Module):
    """Two hidden GELU layers and a linear head: the smallest classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Conv, batch norm, ReLU, a strided conv, a residual add, global average pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = F.relu(x + self.block(x))
        x = F.relu(self.down(x))
        return self.head(x.mean(dim=(2, 3)))


class TinyGPT(nn.Module):
    """One pre-norm decoder block: embeddings, causal nn.MultiheadAttention, LayerNorm, a GELU MLP, a head."""

    def __init__(self, width: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, width), nn.Embedding(SEQUENCE, width)
        self.norm1, self.norm2, self.norm_out = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.head = nn.Linear(width, VOCAB)
        self.register_buffer("mask", torch.triu(torch.ones(SEQUENCE, SEQUENCE, dtype=torch.bool), 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tokens(tokens) + self.positions.weight[: tokens.shape[1]]
        h = self.norm1(x)
        x = x + self.attention(h, h, h, attn_mask=self.mask, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return self.head(self.norm_out(x))


class LSTMLanguageModel(nn.Module):
    """Embedding, a one-layer nn.LSTM and a linear head over the vocabulary."""

    def __init__(self, width: int = 24, hidden: int = 32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, width)
        self.lstm = nn.LSTM(width, hidden, batch_first=True)
        self.head = nn.Linear(hidden, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embedding(tokens))[0])


def classification_data(generator: torch.Generator) -> Batch:
    """64 points in 16-d whose labels a fixed random two-layer teacher gives."""
    x = torch.randn(64, 16, generator=generator)
    teacher = torch.randn(16, 8, generator=generator), torch.randn(8, CLASSES, generator=generator)
    return x, (torch.tanh(x @ teacher[0]) @ teacher[1]).argmax(dim=1)


def image_data(generator: torch.Generator) -> Batch:
    """32 noisy 8x8 images of 4 fixed random patterns; the label is the pattern."""
    patterns = torch.randn(CLASSES, 1, 8, 8, generator=generator)
    labels = torch.arange(32) % CLASSES
    return patterns[labels] + 1.5 * torch.randn(32, 1, 8, 8, generator=generator), labels


def sequence_data(generator: torch.Generator) -> Batch:
    """16 token sequences from a fixed random Markov chain with peaked transitions: inputs and next tokens."""
    transitions = torch.softmax(3.0 * torch.randn(VOCAB, VOCAB, generator=generator), dim=1)
    tokens = torch.empty(16, SEQUENCE + 1, dtype=torch.long)
    tokens[:, 0] = torch.randint(VOCAB, (16,), generator=generator)
    for t in range(SEQUENCE):
        tokens[:, t + 1] = torch.multinomial(transitions[tokens[:, t]], 1, generator=generator).squeeze(1)
    return tokens[:, :-1], tokens[:, 1:]


def make_sgd(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def make_adamw(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01)


@dataclass(frozen=True)
class ModelSpec:
    """A model of the zoo: how to build it, its data and its optimizer (the scenario's recipe)."""

    name: str
    build: Callable[[], nn.Module]
    data: Callable[[torch.Generator], Batch]
    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    description: str

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Cross-entropy of the model on the batch (over every position for a language model)."""
        inputs, targets = batch
        logits = model(inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mlp", MLP, classification_data, make_sgd, "MLP classifier (Linear, GELU), momentum SGD"),
        ModelSpec("cnn", CNN, image_data, make_sgd, "CNN (conv, batch norm, ReLU, residual, pooling), momentum SGD"),
        ModelSpec("gpt", TinyGPT, sequence_data, make_adamw, "tiny GPT (MHA, LayerNorm, GELU), AdamW"),
        ModelSpec("lstm", LSTMLanguageModel, sequence_data, make_adamw, "LSTM language model, AdamW"),
    )
}
