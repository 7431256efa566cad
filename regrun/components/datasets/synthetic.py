"""Synthetic datasets drawn from a seed, for quick studies without files: a 1-D
regression (toy_regression) and classes given by a random linear teacher (teacher)."""

from typing import Annotated

import torch
from torch import Tensor

from regrun.components.datasets.loading import DatasetRecord, register_dataset
from regrun.components.datasets.types import DataSpec, Source, Split
from regrun.schema import NON_NEGATIVE, AtLeast


def open_toy_regression(train_size: Annotated[int, AtLeast(1)] = 1000, test_size: Annotated[int, AtLeast(1)] = 200,
                        noise: Annotated[float, NON_NEGATIVE] = 0.2, seed: Annotated[int, NON_NEGATIVE] = 0) -> Source:
    """A 1-D regression small enough to see a penalty's effect on a tiny net: x uniform in
    [−1, 1], y = x² + noise·u with u uniform in [0, 1); inputs and targets of shape (N, 1).

    Drawn from `seed`, the training samples first, so that test_size leaves them as they are.
    The options' types and ranges are checked from the annotations (regrun/schema.py).
    """
    spec = DataSpec("toy_regression", (1,), "regression", "values", target_shape=(1,))

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        generator = torch.Generator().manual_seed(seed)
        draws = [_toy_samples(size, noise, generator) for size in (train_size, test_size)]
        x, y = draws[0] if train else draws[1]
        return Split(x[:limit].to(device), y[:limit].to(device))

    return Source(spec, read)


def _toy_samples(size: int, noise: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    x = torch.rand(size, 1, generator=generator) * 2 - 1
    return x, x.square() + noise * torch.rand(size, 1, generator=generator)


register_dataset("toy_regression", DatasetRecord(open_toy_regression, "regression"))


def open_teacher(features: Annotated[int, AtLeast(1)] = 128, classes: Annotated[int, AtLeast(2)] = 2,
                 train_size: Annotated[int, AtLeast(1)] = 1000, test_size: Annotated[int, AtLeast(1)] = 200,
                 seed: Annotated[int, NON_NEGATIVE] = 0) -> Source:
    """Random inputs made learnable: x uniform in [0, 1)^features, labelled by a random
    linear teacher, the arg-max of W(x − ½) with W standard normal (classes × features),
    all drawn from `seed`. The classes are linearly separable, so a net can learn them."""
    spec = DataSpec("teacher", (features,), "classification", "labels", classes)

    def read(train: bool, limit: int | None, device: torch.device) -> Split:
        generator = torch.Generator().manual_seed(seed)
        teacher = torch.randn(classes, features, generator=generator)
        x = torch.rand(train_size + test_size, features, generator=generator)
        y = ((x - 0.5) @ teacher.T).argmax(1)
        part = slice(0, train_size) if train else slice(train_size, None)
        return Split(x[part][:limit].to(device), y[part][:limit].to(device))

    return Source(spec, read)


register_dataset("teacher", DatasetRecord(open_teacher, "classification"))
