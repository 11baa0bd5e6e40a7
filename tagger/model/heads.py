"""The small genre head trained on frozen backbone embeddings: a softmax over your genres.

Two shapes: ``linear`` (multinomial logistic regression) and ``mlp`` (one hidden layer).
Inputs are standardised with the training set's mean and spread, which the network keeps as
buffers, so a saved state_dict is the whole head. Every segment is one training example
labelled with its track's genre; classes are weighted by the inverse of their segment count,
so a genre with few tracks is not drowned. Training is seeded and deterministic on one machine.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("linear", "mlp")


@dataclass(frozen=True)
class HeadOptions:
    """How a head is built and trained (recorded in the bundle's card)."""

    embedding: str = "pooled"  # see tagger.model.embeddings.EMBEDDINGS; docs/training.md: why
    features: str = "musicnn"  # tagger.model.embeddings.FEATURE_SETS: musicnn, audioset, both
    kind: str = "mlp"  # linear | mlp
    hidden: int = 128  # mlp only
    dropout: float = 0.3  # mlp only: after the hidden layer
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-3
    label_smoothing: float = 0.1
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class HeadNet(nn.Module):
    """Standardise, then a linear layer or a one-hidden-layer MLP; returns logits."""

    def __init__(self, input_dim: int, n_labels: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("inv_std", torch.ones(input_dim))
        if hidden:
            self.net = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, n_labels))
        else:
            self.net = nn.Sequential(nn.Linear(input_dim, n_labels))

    @classmethod
    def build(cls, input_dim: int, n_labels: int, options: HeadOptions) -> HeadNet:
        if options.kind not in HEADS:
            raise ValueError(f"unknown head {options.kind!r}; choose from {', '.join(HEADS)}")
        hidden = options.hidden if options.kind == "mlp" else 0
        return cls(input_dim, n_labels, hidden, options.dropout if hidden else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) * self.inv_std)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Softmax probabilities, shape (segments, labels), float32."""
        self.eval()
        with torch.inference_mode():
            logits = self(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
            return torch.softmax(logits, dim=1).numpy()


@dataclass(frozen=True)
class FitResult:
    net: HeadNet
    seconds: float
    final_loss: float


def fit_head(features: np.ndarray, labels: np.ndarray, n_labels: int,
             options: HeadOptions = HeadOptions()) -> FitResult:
    """Train a head on (segments, dim) ``features`` with integer ``labels`` in [0, n_labels).

    Runs on one thread: the head's matrices are small, and more threads only add
    synchronisation (5-10x slower on a busy 2-core machine, see bench/train_time.py).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(features, labels, n_labels, options)
    finally:
        torch.set_num_threads(threads)


def _fit(features: np.ndarray, labels: np.ndarray, n_labels: int,
         options: HeadOptions) -> FitResult:
    started = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as segments, got {len(x)} and {len(y)}")
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    net = HeadNet.build(x.shape[1], n_labels, options)
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False)
    net.mean.copy_(mean)
    net.inv_std.copy_(torch.where(std > 1e-6, 1.0 / std.clamp_min(1e-6), torch.ones_like(std)))
    counts = torch.bincount(y, minlength=n_labels).float()
    weights = torch.where(counts > 0, counts.sum() / (n_labels * counts.clamp_min(1)),
                          torch.zeros_like(counts))
    optimiser = torch.optim.AdamW(net.parameters(), lr=options.learning_rate,
                                  weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(x) / options.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=options.learning_rate, total_steps=options.epochs * steps_per_epoch)
    net.train()
    loss_value = float("nan")
    for _ in range(options.epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), options.batch_size):
            idx = order[start:start + options.batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx], weight=weights,
                                   label_smoothing=options.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
        loss_value = total / len(x)
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return FitResult(net, time.perf_counter() - started, loss_value)
