"""Build things by name from a config node: `{name: adamw, lr: 1e-3}` → `AdamW(..., lr=1e-3)`.

Configs name a registry entry, never an import path, so a config is plain data.
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from regrun.errors import RegrunError, choices


def build(registry: Mapping[str, Callable[..., Any]], cfg: Mapping[str, Any], group: str, **fixed: Any) -> Any:
    """Call `registry[cfg["name"]]` with `fixed` and the config's other keys as keywords.

    Unknown names and keys, and the builder's own TypeError/ValueError (a negative learning
    rate, say), become a one-line `RegrunError` naming the config group.
    """
    name = cfg.get("name")
    if name not in registry:
        raise RegrunError(f"{group}.name: unknown {group} {name!r}; allowed: {choices(registry)}")
    builder = registry[name]
    options = {key: value for key, value in cfg.items() if key != "name"}
    accepted = [p for p in inspect.signature(builder).parameters if p not in fixed]
    for key in options:
        if key not in accepted:
            raise RegrunError(f"{group}.{key}: not an option of {group} {name!r}; allowed: {choices(accepted)}")
    try:
        return builder(**fixed, **options)
    except (TypeError, ValueError) as err:
        raise RegrunError(f"{group} {name!r}: {err}") from err
