"""Selecting a model's modules and parameters by name pattern and class name.

One selection serves every spec that names a part of the model: a regularization target
(`reg.targets.NAME`) and an optimizer parameter group (`optimizer.groups.NAME`). A spec
names modules by fnmatch patterns over `model.named_modules()` (`layers`), by class name
(`types`), or both (a module must then match both), minus `exclude` patterns; a site
then says which of their parameters:

    weights      parameters whose name ends in "weight" (kernels, BatchNorm scales)
    biases       parameters whose name ends in "bias"
    params       all parameters of the modules

A selection that matches nothing is an error, never a silent no-op.
"""

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from regrun.errors import RegrunError, choices

PARAM_SITES = {"weights": "weight", "biases": "bias", "params": ""}  # site → parameter name suffix
ParamSite = Literal["weights", "biases", "params"]
TORCH_MODULE_TYPES = frozenset(
    name for name, obj in vars(nn).items() if isinstance(obj, type) and issubclass(obj, nn.Module)
)
Names = str | Sequence[str] | None  # one name or pattern, a list of them, or none


@dataclass(frozen=True)
class Selection:
    """The selection keys of a node (a target, a parameter group): modules by name pattern,
    by class name, minus excluded patterns."""

    layers: Names = None
    types: Names = None
    exclude: Names = None

    def lists(self) -> tuple[list[str], list[str], list[str]]:
        """layers, types and exclude, each as a list of names."""
        return _as_list(self.layers), _as_list(self.types), _as_list(self.exclude)


def _as_list(names: Names) -> list[str]:
    return [] if names is None else [names] if isinstance(names, str) else list(names)


def match_modules(model: nn.Module, where: str, selection: Selection) -> list[str]:
    """Names of the modules selected by `layers`, `types` and `exclude`."""
    modules = {name: m for name, m in model.named_modules() if name}  # "" is the model itself
    layers, types, exclude = selection.lists()
    if not layers and not types:
        raise RegrunError(f"{where}: give `layers` (name patterns) and/or `types` (class names) to select modules")
    selected = list(modules)
    for pattern in layers:
        if not fnmatch.filter(modules, pattern):
            raise RegrunError(f"{where}.layers: {pattern!r} matches no module; the model has: {choices(modules)}")
    if layers:
        selected = [n for n in selected if any(fnmatch.fnmatchcase(n, p) for p in layers)]
    # A type may be absent from this model (presets name Conv2d for the MLP too), but it
    # must be a real module class: a typo fails here instead of selecting nothing.
    model_types = sorted({type(m).__name__ for m in modules.values()})
    for type_name in types:
        if type_name not in model_types and type_name not in TORCH_MODULE_TYPES:
            raise RegrunError(f"{where}.types: unknown module type {type_name!r}; this model has: {choices(model_types)}")
    if types:
        selected = [n for n in selected if type(modules[n]).__name__ in types]
    selected = [n for n in selected if not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
    if not selected:
        raise RegrunError(f"{where}: layers {layers} ∩ types {types} minus exclude {exclude} selects no module; the model has: {choices(modules)}")
    return selected


def site_params(model: nn.Module, where: str, site: str, modules: Sequence[str]) -> list[str]:
    """Names of the parameters of `modules` that `site` (weights, biases, params) selects."""
    lookup = dict(model.named_modules())
    suffix = PARAM_SITES[site]
    found: dict[str, None] = {}  # ordered set: a container and its child may both match
    for module_name in modules:
        for param_name, _ in lookup[module_name].named_parameters(prefix=module_name):
            if param_name.endswith(suffix):
                found[param_name] = None
    if not found:
        raise RegrunError(f"{where}: site {site!r} finds no parameters in the selected modules {choices(modules)}")
    return list(found)
