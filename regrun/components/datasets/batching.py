"""Batches sliced from a split held on the device: shuffled for training (resumable
mid-epoch), in order for evaluation."""

from collections.abc import Iterator

import torch
from torch import Tensor

from regrun.components.datasets.types import Split


def batches(split: Split, batch_size: int, generator: torch.Generator, skip: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled mini-batches; the permutation comes from a CPU generator for reproducibility.

    `skip` drops the first batches of the permutation: a run resumed mid-epoch replays the
    epoch's permutation (from the generator state at the epoch's start) and skips what it did.
    """
    order = torch.randperm(len(split), generator=generator).to(split.y.device)
    for start in range(skip * batch_size, len(split), batch_size):
        batch = split.take(order[start:start + batch_size])
        yield batch.x, batch.y


def chunks(split: Split, size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The split in order, as views of at most `size` samples (for evaluation)."""
    for start in range(0, len(split), size):
        yield split.x[start:start + size], split.y[start:start + size]
