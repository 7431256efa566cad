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
from collections.abc import Mapping, Sequence

from torch import nn

from regrun.errors import RegrunError, choices

SELECT_KEYS = ("layers", "types", "exclude")
PARAM_SITES = {"weights": "weight", "biases": "bias", "params": ""}  # site → parameter name suffix
TORCH_MODULE_TYPES = frozenset(
    name for name, obj in vars(nn).items() if isinstance(obj, type) and issubclass(obj, nn.Module)
)


def match_modules(model: nn.Module, where: str, spec: Mapping) -> list[str]:
    """Names of the modules selected by a spec's `layers`, `types` and `exclude`."""
    modules = {name: m for name, m in model.named_modules() if name}  # "" is the model itself
    layers, types, exclude = (str_list(where, key, spec.get(key)) for key in SELECT_KEYS)
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


def str_list(where: str, key: str, value: object) -> list[str]:
    """A name or a list of names as a list; None as an empty one."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RegrunError(f"{where}.{key} must be a name or a list of names, got {value!r}")


def one_of(where: str, key: str, value: object, allowed: Sequence[str] | Mapping[str, object]) -> str:
    """`value` if it is one of `allowed`, else a one-line error naming `where.key` and the choices."""
    if not isinstance(value, str) or value not in allowed:
        raise RegrunError(f"{where}.{key}: unknown {key} {value!r}; allowed: {choices(allowed)}")
    return value
