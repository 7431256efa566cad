"""Optimizers by name."""

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from regrun.components.registry import build

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer named by `cfg["name"]` over all of the model's parameters."""
    return build(OPTIMIZERS, cfg, "optimizer", params=model.parameters())
