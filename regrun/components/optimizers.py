"""Optimizers by name.

The optimizer node's keys but `name` (and `groups`, the per-layer parameter groups that
training/groups.py resolves) are keyword options of the optimizer's constructor.

SGD, Adam and AdamW run on torch's fused kernel (one pass over each parameter per step)
wherever torch has one for the parameters' device (CPU and CUDA in current releases),
unless the node chooses an implementation itself (`optimizer.foreach=true`,
`optimizer.fused=false`). torch's own default on CPU is a loop of about ten tensor
operations per parameter: on the project's 2-core machine (bench/optimizer_speed.py),
AdamW's step over the default MLP's 235k parameters took 0.51 ms that way and 0.18 ms fused,
and over 8 stacked copies (a fused sweep group) 3.1 ms against 0.8 ms. The two step alike to the last bit but
for an element or two in a few hundred, one unit in the last place apart after 50 steps
(tests/components/test_optimizers.py).
"""

import functools
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


IMPLEMENTATIONS = ("foreach", "fused")  # the options that choose how torch's optimizers step


def fused_where_possible(cls: type[torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    """`cls`, built with `fused=True` when the options choose no implementation and torch
    has a fused kernel for these parameters; its signature (and so its schema) is `cls`'s."""

    @functools.wraps(cls)
    def build_fused(params: Iterable[Any], **options: Any) -> torch.optim.Optimizer:
        params = list(params)  # read twice when the fused kernel is refused
        if not any(options.get(key) is not None for key in IMPLEMENTATIONS):
            try:
                return cls(params, **options, fused=True)
            except RuntimeError:  # no fused kernel for this device or dtype (or torch release)
                pass
        return cls(params, **options)

    return build_fused


def implementation(optimizer: torch.optim.Optimizer) -> str:
    """How the optimizer steps: `fused` (one kernel), `foreach` (batched ops) or `for-loop`.

    torch's step reads the choice from each param group, and loading a checkpoint puts back
    the one it was saved with (a run resumed from before regrun fused keeps its loop), so
    the groups say, not the constructor's defaults."""
    chosen = optimizer.param_groups[0] if optimizer.param_groups else optimizer.defaults
    if chosen.get("fused"):
        return "fused"
    return "foreach" if chosen.get("foreach") else "for-loop"


register_optimizer("sgd", fused_where_possible(torch.optim.SGD))
register_optimizer("adam", fused_where_possible(torch.optim.Adam))
register_optimizer("adamw", fused_where_possible(torch.optim.AdamW))


def build_optimizer(params: Iterable[Tensor] | Iterable[dict[str, Any]], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer named by `cfg["name"]`, with the node's other keys as its options, over
    `params`: tensors, or torch's parameter-group dicts, whose own options override the node's."""
    return build(OPTIMIZERS, cfg, params=params)
