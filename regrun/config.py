"""Config values as plain data: the dotted keys of a nested config.

Torch-free: readers of run directories and the command line use it.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from omegaconf import DictConfig


def conf_dir() -> Path:
    """The config folder, regrun/conf: in a source checkout a link to the top-level conf/,
    resolved so that paths in messages name the files as they lie."""
    return (Path(__file__).parent / "conf").resolve()


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: {"trainer": {"epochs": 5}} → {"trainer.epochs": 5}.

    Lists stay whole values ("model.hidden": [256, 128]).
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def to_plain(node: "DictConfig", resolve: bool = True, throw_on_missing: bool = False) -> dict[str, Any]:
    """An OmegaConf mapping as plain dicts and lists (interpolations resolved when `resolve`)."""
    from omegaconf import OmegaConf  # imported late: readers of run directories rarely need it

    return cast(dict[str, Any], OmegaConf.to_container(node, resolve=resolve, throw_on_missing=throw_on_missing))
