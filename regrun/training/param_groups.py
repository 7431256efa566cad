"""Optimizer parameter groups: optimizer options (weight decay, learning rate, …) per layer.

`optimizer.groups.NAME` selects parameters as a target does (training/selection.py:
`layers`, `types`, `exclude`, and `site`: weights | biases | params, default params) and
sets options of the optimizer for them: any keyword option of the optimizer's constructor
(`weight_decay`, `lr`, `momentum`, `betas`, …; an unknown key's error lists them), but the
switches that choose one implementation for all parameters (foreach, fused,
differentiable, capturable), which belong on the optimizer node.

Every parameter lands in exactly one torch param group: the parameters no group selects
form the group `default`, which takes the optimizer node's own options; a parameter that
two groups select, a group that selects nothing and a group that sets no option are
errors. A group's options are checked against the optimizer's signature (regrun.schema:
kinds and ranges), and, since torch checks only the node's options (its defaults), by
building the optimizer once more with them on a spare tensor (a negative weight decay).
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from regrun.components.optimizers import OPTIMIZERS, build_optimizer
from regrun.components.registry import call_with_options, option_names
from regrun.errors import RegrunError, choices
from regrun.schema import check_options
from regrun.training.selection import PARAM_SITES, SELECT_KEYS, match_modules, one_of, site_params

DEFAULT = "default"  # the group of the parameters no group selects
SELECTION = (*SELECT_KEYS, "site")
WHOLE_OPTIMIZER = ("foreach", "fused", "differentiable", "capturable")


@dataclass(frozen=True)
class ParamGroup:
    """A resolved parameter group: its parameters' names and the options it sets."""

    name: str
    params: tuple[str, ...]
    options: Mapping[str, Any]  # beyond the node's; none for the default group


def build_grouped_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> tuple[torch.optim.Optimizer, list[ParamGroup]]:
    """The optimizer of the `optimizer` node over the model's parameters, in its groups."""
    node = {key: value for key, value in cfg.items() if key != "groups"}
    groups = resolve_groups(model, cfg)
    tensors = dict(model.named_parameters())
    optimizer = build_optimizer([{"params": [tensors[n] for n in g.params], **g.options} for g in groups], node)
    factory = OPTIMIZERS[node["name"]]  # known: build_optimizer has looked it up
    options = {key: value for key, value in node.items() if key != "name"}
    spare = [torch.zeros(1, requires_grad=True)]
    for g in groups:
        if g.options:
            where = f"optimizer.groups.{g.name}"
            call_with_options(factory, options | dict(g.options), where, f"{where} (optimizer {node['name']!r})", params=spare)
    return optimizer, groups


def resolve_groups(model: nn.Module, cfg: Mapping[str, Any]) -> list[ParamGroup]:
    """The default group (when any parameter is left for it), then each named group."""
    specs = cfg.get("groups") or {}
    if not isinstance(specs, Mapping):
        raise RegrunError(f"optimizer.groups must be a mapping of group name to spec, got {specs!r}")
    name = cfg.get("name")
    factory = OPTIMIZERS.entry(name, "optimizer.name")
    groups = [_resolve_group(model, group, spec, name, factory) for group, spec in specs.items()]
    owner: dict[str, str] = {}
    for g in groups:
        for param in g.params:
            if param in owner:
                raise RegrunError(f"optimizer.groups: parameter {param!r} is selected by both {owner[param]!r} and {g.name!r}; "
                                  "a parameter belongs to one group only (narrow one with exclude or site)")
            owner[param] = g.name
    rest = tuple(n for n, _ in model.named_parameters() if n not in owner)
    return ([ParamGroup(DEFAULT, rest, {})] if rest else []) + groups


def group_options(factory: Callable[..., Any]) -> list[str] | None:
    """The options a group may set for this optimizer; None when it takes any keyword."""
    names = option_names(factory, ("params",))
    return None if names is None else [n for n in names if n not in WHOLE_OPTIMIZER]


def _resolve_group(model: nn.Module, name: object, spec: object, optimizer: str, factory: Callable[..., Any]) -> ParamGroup:
    where = f"optimizer.groups.{name}"
    if name == DEFAULT:
        raise RegrunError(f"{where}: the name {DEFAULT!r} is the group of the parameters no group selects; choose another name")
    allowed = group_options(factory)
    if not isinstance(spec, Mapping):
        raise RegrunError(f"{where} must be a mapping of {choices(SELECTION)} and options of optimizer {optimizer!r}, got {spec!r}")
    for key in spec:
        if key in WHOLE_OPTIMIZER:
            raise RegrunError(f"{where}.{key}: set it on the optimizer node (optimizer.{key}); it applies to all groups at once")
        if key not in SELECTION and allowed is not None and key not in allowed:
            raise RegrunError(f"{where}: unknown key {key!r}; allowed: {choices(SELECTION)}, or an option of optimizer {optimizer!r}: {choices(allowed)}")
    options = {key: value for key, value in spec.items() if key not in SELECTION}
    if not options:
        raise RegrunError(f"{where} sets no optimizer option; give one of {choices(allowed or ['lr', 'weight_decay'])}")
    options = check_options(factory, options, where)  # kinds and ranges from the optimizer's signature
    site = one_of(where, "site", spec.get("site", "params"), PARAM_SITES)
    selected = site_params(model, where, site, match_modules(model, where, spec))
    return ParamGroup(str(name), _canonical(model, selected), options)


def _canonical(model: nn.Module, names: Sequence[str]) -> tuple[str, ...]:
    """Parameter names as `model.named_parameters()` spells them: a tensor shared by two
    modules (tied weights) has one name there, and one group."""
    canonical = {id(p): n for n, p in model.named_parameters()}
    return tuple(dict.fromkeys(canonical[id(model.get_parameter(n))] for n in names))


def describe_groups(groups: Sequence[ParamGroup], optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """One row per group: its name, parameters, element count, the options it sets and the
    options in effect (torch's param group, the node's defaults filled in)."""
    rows = []
    for g, torch_group in zip(groups, optimizer.param_groups, strict=True):
        effective = {k: list(v) if isinstance(v, tuple) else v for k, v in torch_group.items()
                     if k != "params" and k not in WHOLE_OPTIMIZER}
        rows.append({"group": g.name, "params": list(g.params), "numel": sum(p.numel() for p in torch_group["params"]),
                     "set": dict(g.options), "options": effective})
    return rows
