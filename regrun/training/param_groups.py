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
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from regrun.components.optimizers import OPTIMIZERS, build_optimizer
from regrun.components.registry import Choice, builder_hints, call_with_options, option_names
from regrun.errors import RegrunError, choices
from regrun.schema import FLATTEN, OPTIONS, parse, read_node
from regrun.training.selection import ParamSite, Selection, match_modules, site_params

DEFAULT = "default"  # the group of the parameters no group selects
WHOLE_OPTIMIZER = ("foreach", "fused", "differentiable", "capturable")


@dataclass(frozen=True)
class GroupSpec:
    """One entry of `optimizer.groups`, read and checked: its selection and the optimizer
    options it sets for the parameters it selects."""

    selection: Selection = field(default_factory=Selection, metadata=FLATTEN)
    site: ParamSite = "params"
    options: Mapping[str, Any] = field(default_factory=dict, metadata=OPTIONS)


@dataclass(frozen=True)
class OptimizerSettings:
    """The `optimizer` node, read and checked: the optimizer's name, its options (keyword
    options of its constructor) and its parameter groups."""

    name: str
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict, metadata=OPTIONS)

    @classmethod
    def from_node(cls, where: str, node: object) -> "OptimizerSettings":
        """The node at `where` (`optimizer`): its name first, whose constructor's signature
        says which options it and its groups take."""
        name = node.get("name") if isinstance(node, Mapping) else None
        factory = OPTIMIZERS.entry(name, f"{where}.name")
        hints = _option_hints(factory)
        raw_groups = node.get("groups") or {} if isinstance(node, Mapping) else {}
        if not isinstance(raw_groups, Mapping):
            raise RegrunError(f"{where}.groups must be a mapping of group name to spec, got {raw_groups!r}")
        groups = {str(g): _read_group(f"{where}.groups.{g}", g, spec, factory) for g, spec in raw_groups.items()}
        return parse(where, node, cls, options=hints, groups=groups)


def _option_hints(factory: Callable[..., Any], exclude: Sequence[str] = ()) -> dict[str, Any] | None:
    """The keyword options of an optimizer's constructor and their types; None: any keyword."""
    hints = builder_hints(factory, ("params",))
    return None if hints is None else {name: hint for name, hint in hints.items() if name not in exclude}


def _read_group(where: str, name: object, spec: object, factory: Callable[..., Any]) -> GroupSpec:
    if name == DEFAULT:
        raise RegrunError(f"{where}: the name {DEFAULT!r} is the group of the parameters no group selects; "
                          "choose another name")
    if isinstance(spec, Mapping):
        for key in spec:
            if key in WHOLE_OPTIMIZER:
                raise RegrunError(f"{where}.{key}: set it on the optimizer node (optimizer.{key}); it applies to "
                                  "all groups at once")
    group = parse(where, spec, GroupSpec, options=_option_hints(factory, WHOLE_OPTIMIZER))
    if not group.options:
        allowed = group_options(factory)
        raise RegrunError(f"{where} sets no optimizer option; give one of {choices(allowed or ['lr', 'weight_decay'])}")
    return group


@dataclass(frozen=True)
class ParamGroup:
    """A resolved parameter group: its parameters' names and the options it sets."""

    name: str
    params: tuple[str, ...]
    options: Mapping[str, Any]  # beyond the node's; none for the default group


def build_grouped_optimizer(model: nn.Module, settings: OptimizerSettings | Mapping[str, Any]
                            ) -> tuple[torch.optim.Optimizer, list[ParamGroup]]:
    """The optimizer of the `optimizer` node (checked settings, or a mapping read as them)
    over the model's parameters, in its groups."""
    settings = read_node("optimizer", settings, OptimizerSettings)
    groups = resolve_groups(model, settings)
    tensors = dict(model.named_parameters())
    optimizer = build_optimizer([{"params": [tensors[n] for n in g.params], **g.options} for g in groups],
                                Choice(settings.name, settings.options))
    # torch checks the ranges of the node's options only (its defaults): build once more
    # on a spare tensor with each group's options, so a negative weight decay is refused.
    factory = OPTIMIZERS[settings.name]
    spare = [torch.zeros(1, requires_grad=True)]
    for g in groups:
        if g.options:
            where = f"optimizer.groups.{g.name}"
            call_with_options(factory, {**settings.options, **g.options}, where,
                              f"{where} (optimizer {settings.name!r})", params=spare)
    return optimizer, groups


def resolve_groups(model: nn.Module, settings: OptimizerSettings | Mapping[str, Any]) -> list[ParamGroup]:
    """The default group (when any parameter is left for it), then each named group."""
    settings = read_node("optimizer", settings, OptimizerSettings)
    groups = [_resolve_group(model, name, spec) for name, spec in settings.groups.items()]
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


def _resolve_group(model: nn.Module, name: str, spec: GroupSpec) -> ParamGroup:
    where = f"optimizer.groups.{name}"
    selected = site_params(model, where, spec.site, match_modules(model, where, spec.selection))
    return ParamGroup(name, _canonical(model, selected), dict(spec.options))


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
