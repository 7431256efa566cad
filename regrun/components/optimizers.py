"""Optimizers by name.

The optimizer node's keys but `name` (and `groups`, the per-layer parameter groups that
training/param_groups.py resolves) are keyword options of the optimizer's constructor.

SGD, Adam and AdamW run on torch's fused kernel (one pass over each parameter per step)
wherever torch has one for the parameters' device (CPU and CUDA in current releases),
unless the node chooses an implementation itself (`+optimizer.foreach=true`,
`+optimizer.fused=false`). torch's own default on CPU is a loop of about ten tensor
operations per parameter: on the project's 2-core machine (bench/optimizer_speed.py),
AdamW's step over the default MLP's 235k parameters took 0.51 ms that way and 0.18 ms fused,
and over 8 stacked copies (a fused sweep group) 3.1 ms against 0.8 ms. The two step alike to the last bit but
for an element or two in a few hundred, one unit in the last place apart after 50 steps
(tests/components/test_optimizers.py).
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from regrun.components.registry import Choice, Registry, build, read_choice

# name → optimizer class (or any callable taking the parameters and keyword options)
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer", "regrun.optimizers")


def register_optimizer(name: str, factory: Callable[..., torch.optim.Optimizer], replace: bool = False) -> None:
    """Make `optimizer.name=NAME` build `factory(params, **the node's other keys)`."""
    OPTIMIZERS.register(name, factory, replace)


register_optimizer("sgd", torch.optim.SGD)
register_optimizer("adam", torch.optim.Adam)
register_optimizer("adamw", torch.optim.AdamW)

IMPLEMENTATIONS = ("foreach", "fused")  # the options that choose how torch's optimizers step
WITH_FUSED_KERNEL = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)  # and their subclasses


def fused_kernel_fits(factory: Callable[..., Any], tensors: Sequence[Tensor], options: Mapping[str, Any]) -> bool:
    """Whether `factory` is one of torch's optimizers with a fused kernel, the options choose
    no implementation (nor a differentiable or capturable step, which it lacks), and torch
    has the kernel for every tensor's device and dtype (checked here: torch itself checks
    only at the first step)."""
    if not (isinstance(factory, type) and issubclass(factory, WITH_FUSED_KERNEL)):
        return False
    if any(options.get(key) is not None for key in IMPLEMENTATIONS) or any(
            options.get(key) for key in ("differentiable", "capturable")):
        return False
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # a torch release without the helper: leave the choice to torch
        return False
    devices = _get_fused_kernels_supported_devices()
    return bool(tensors) and all(t.is_floating_point() and t.device.type in devices for t in tensors)


def implementation(optimizer: torch.optim.Optimizer) -> str:
    """How the optimizer steps: `fused` (one kernel), `foreach` (batched ops) or `for-loop`;
    `its own` for an optimizer without torch's implementation options (a plugin's).

    torch's step reads the choice from each param group, and loading a checkpoint puts back
    the one it was saved with (a run resumed from before regrun fused keeps its loop), so the
    groups say, not the constructor's defaults; left to torch (None), foreach is its choice
    on CUDA and the loop elsewhere."""
    group = optimizer.param_groups[0]
    if not any(key in group for key in IMPLEMENTATIONS):
        return "its own"
    if group.get("fused"):
        return "fused"
    foreach = group.get("foreach")
    if foreach is None:
        from torch.optim.optimizer import _default_to_fused_or_foreach

        foreach = _default_to_fused_or_foreach(group["params"], bool(group.get("differentiable")), False)[1]
    return "foreach" if foreach else "for-loop"


def read_optimizer(where: str, node: object) -> Choice:
    """An optimizer node's name and options, checked against its constructor's signature."""
    return read_choice(where, node, OPTIMIZERS, Choice, fixed=("params",))


def build_optimizer(params: Iterable[Tensor] | Iterable[dict[str, Any]],
                    optimizer: Choice | Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer a node names (checked, or a mapping read as one) with its options over
    `params`: tensors, or torch's parameter-group dicts, whose own options override the
    node's. On torch's fused kernel where it fits (`fused_kernel_fits`)."""
    choice = optimizer if isinstance(optimizer, Choice) else read_optimizer("optimizer", optimizer)
    groups: list[Any] = list(params)
    tensors = [t for p in groups for t in (p["params"] if isinstance(p, dict) else [p])]
    if fused_kernel_fits(OPTIMIZERS[choice.name], tensors, choice.options):
        choice = Choice(choice.name, {**choice.options, "fused": True})
    return build(OPTIMIZERS, choice, params=params)
