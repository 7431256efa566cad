"""The user's own code named on the command line as MODULE:FUNCTION (a model factory, a
penalty), imported the way `python -m` would find it, every failure one line naming the key."""

import importlib
import os
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from regrun.errors import RegrunError, choices, contained, one_line

CALLABLE_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_callable_spec(value: object) -> bool:
    """Whether `value` is spelled MODULE:FUNCTION (and so names user code, not a registry entry)."""
    return isinstance(value, str) and CALLABLE_SPEC.fullmatch(value) is not None


def load_callable(spec: object, key: str, example: str) -> Callable[..., Any]:
    """The callable `spec` = MODULE:FUNCTION names (FUNCTION may be dotted: `Net.build`);
    `key` is the config key that gave it, `example` a spec to show when it is misspelled."""
    if not is_callable_spec(spec):
        raise RegrunError(f"{key} must be MODULE:FUNCTION (e.g. {example}, MODULE in the "
                          f"current directory or on the Python path), got {spec!r}")
    assert isinstance(spec, str)
    module_name, _, path = spec.partition(":")
    found: Any = import_user_module(module_name, key)
    owner = module_name
    for part in path.split("."):
        if not hasattr(found, part):
            defined = sorted(n for n, v in vars(found).items() if callable(v) and not n.startswith("_")
                             and getattr(v, "__module__", None) == module_name)
            raise RegrunError(f"{key}: {owner} has no attribute {part!r}; it defines: {choices(defined)}")
        found, owner = getattr(found, part), f"{owner}.{part}"
    if not callable(found):
        raise RegrunError(f"{key}: {spec} is not callable ({type(found).__name__}); name a function or class")
    return found


def import_user_module(name: str, key: str) -> ModuleType:
    """Import `name` with the current directory first on the Python path, as `python -m` has it."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        # Kept there afterwards: the module may import its neighbours later, when it runs.
        sys.path.insert(0, cwd)
    try:
        with contained(f"{key}: importing {name!r}"):
            return importlib.import_module(name)
    except RegrunError:
        raise
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(f"{err.name}.")):
            raise RegrunError(f"{key}: no module {name!r} in the current directory ({cwd}) "
                              "or on the Python path") from err
        raise RegrunError(f"{key}: importing {name!r} failed: {one_line(err)}") from err
    except Exception as err:  # a SyntaxError, or whatever the module raises as it runs
        raise RegrunError(f"{key}: importing {name!r} failed: {one_line(err)}") from err
