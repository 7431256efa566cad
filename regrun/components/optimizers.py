"""Optimizers by name.

The optimizer node's keys but `name` (and `groups`, the per-layer parameter groups that
training/groups.py resolves) are keyword options of the optimizer's constructor.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from regrun.components.registry import Registry, build

# name → optimizer class (or any callable taking the parameters and keyword options)
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer", "regrun.optimizers")


def register_optimizer(name: str, factory: Callable[..., torch.optim.Optimizer], replace: bool = False) -> None:
    """Make `optimizer.name=NAME` build `factory(params, **the node's other keys)`."""
    OPTIMIZERS.register(name, factory, replace)


register_optimizer("sgd", torch.optim.SGD)
register_optimizer("adam", torch.optim.Adam)
register_optimizer("adamw", torch.optim.AdamW)


def build_optimizer(params: Iterable[Tensor] | Iterable[dict[str, Any]], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer named by `cfg["name"]`, with the node's other keys as its options, over
    `params`: tensors, or torch's parameter-group dicts, whose own options override the node's."""
    return build(OPTIMIZERS, cfg, params=params)
