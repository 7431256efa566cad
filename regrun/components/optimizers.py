"""Optimizers by name."""

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from regrun.components.registry import Registry, build

# name → optimizer class (or any callable taking the parameters and keyword options)
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer", "regrun.optimizers")


def register_optimizer(name: str, factory: Callable[..., torch.optim.Optimizer], replace: bool = False) -> None:
    """Make `optimizer.name=NAME` build `factory(params, **the node's other keys)`."""
    OPTIMIZERS.register(name, factory, replace)


register_optimizer("sgd", torch.optim.SGD)
register_optimizer("adam", torch.optim.Adam)
register_optimizer("adamw", torch.optim.AdamW)


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer named by `cfg["name"]` over all of the model's parameters."""
    return build(OPTIMIZERS, cfg, params=model.parameters())
