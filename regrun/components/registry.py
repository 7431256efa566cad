"""Registries keyed by name, and building an entry from a config node.

Each kind of component (model, dataset, task, penalty, optimizer) has one `Registry`:
one record per name, filled by regrun's own modules through `register`, and by
installed packages through a Python entry-point group (`regrun.models`, ...), loaded the
first time the registry is read. Configs name an entry, never an import path, so a
config is plain data:

    {name: adamw, lr: 1e-3}  →  OPTIMIZERS["adamw"]  →  AdamW(params, lr=1e-3)

A plugin's package declares, in its pyproject.toml:

    [project.entry-points."regrun.models"]
    tiny_resnet = "my_package.models:tiny_resnet"

and the object the entry point names is registered as it is, or, when it is a plain
function and the registry wraps functions in records, through the registry's `wrap`.
"""

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from regrun.errors import RegrunError, choices, contained
from regrun.schema import OPTIONS, check_options, option_hints, parse

log = logging.getLogger(__name__)
T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Name → record for one kind of component, with its entry-point group.

    A Mapping, so `name in REG`, `REG[name]` and `sorted(REG)` work; `entry(name)` is the
    lookup with a one-line error that lists what is allowed.
    """

    def __init__(self, kind: str, group: str, wrap: Callable[[str, Any], T] | None = None):
        self.kind = kind  # "model": words in messages, and the config group (`model.name`)
        self.entry_point_group = group  # "regrun.models"
        self._wrap = wrap  # turns what an entry point names into a record, when it is not one
        self._records: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str, record: T, replace: bool = False) -> T:
        """Add `record` under `name`; a name already taken is an error unless `replace`."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._records and not replace:
            raise ValueError(f"{self.kind} {name!r} is registered already; pass replace=True to override it")
        self._records[name] = record
        return record

    def entry(self, name: object, where: str | None = None) -> T:
        """The record named `name`, or a one-line error naming `where` and the allowed names."""
        if not isinstance(name, str) or name not in self:
            where = where or f"{self.kind}.name"
            raise RegrunError(f"{where}: unknown {self.kind} {name!r}; allowed: {choices(self)}")
        return self[name]

    def _load_plugins(self) -> None:
        """Register every entry point of this registry's group, once; a broken plugin is a warning."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in metadata.entry_points(group=self.entry_point_group):
            if point.name in self._records:
                continue  # regrun's own entries win over a plugin of the same name
            try:
                with contained("it"):  # a plugin that exits as it is imported: a broken plugin too
                    loaded = point.load()
                    self.register(point.name, self._wrap(point.name, loaded) if self._wrap else loaded)
            except Exception as err:  # a plugin must not take regrun down with it
                log.warning("%s plugin %r (%s) not loaded: %s", self.kind, point.name, point.value, err)

    def __getitem__(self, name: str) -> T:
        self._load_plugins()
        return self._records[name]

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(self._records)

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._records)


def option_names(builder: Callable[..., Any], fixed: Iterable[str] = (), positional: int = 0) -> list[str] | None:
    """The keyword options `builder` takes besides the `fixed` ones and its first `positional`
    parameters; None when it takes any (**kwargs)."""
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    named = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    return [name for name in named[positional:] if name not in fixed]


def builder_hints(builder: Callable[..., Any], fixed: Iterable[str] = (), positional: int = 0) -> dict[str, Any] | None:
    """The keyword options `builder` takes (as `option_names` says) and each one's type (its
    annotation, or its default's type; Any when it has neither); None when it takes any."""
    names = option_names(builder, fixed, positional)
    if names is None:
        return None
    hints = option_hints(builder)
    return {name: hints.get(name, Any) for name in names}


def call_with_options(builder: Callable[..., Any], options: Mapping[str, Any], where: str, what: str,
                      positional: Sequence[Any] = (), **fixed: Any) -> Any:
    """Call `builder(*positional, **fixed, **options)`, checking the options against its signature.

    An option the builder does not take (`where.key`), and the builder's own TypeError or
    ValueError (a negative learning rate, say), become a one-line `RegrunError`; `what`
    names the thing built ("optimizer 'adamw'"). `positional` fills the builder's first
    parameters whatever their names (a model builder's input shape and output count).
    """
    accepted = option_names(builder, fixed, len(positional))
    for key in options:
        if accepted is not None and key not in accepted:
            raise RegrunError(f"{where}.{key}: not an option of {what}; allowed: {choices(accepted)}")
    options = check_options(builder, options, where)  # types and ranges from the builder's signature
    try:
        return builder(*positional, **fixed, **options)
    except (TypeError, ValueError) as err:
        raise RegrunError(f"{what}: {err}") from err


@dataclass(frozen=True)
class Choice:
    """A config node that names a registry entry (`name`) and gives its options as its other
    keys: `{name: adamw, lr: 1e-3}`."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict, metadata=OPTIONS)


C = TypeVar("C", bound=Choice)


def read_choice(where: str, node: object, registry: "Registry[Callable[..., Any]]", cls: type[C],
                positional: int = 0, fixed: Iterable[str] = ()) -> C:
    """The node at `where` read as `cls` (a `Choice`) of `registry`: the name must be
    registered and each option one the builder takes, of its type (its signature is the schema)."""
    name = node.get("name") if isinstance(node, Mapping) else None
    builder = registry.entry(name, f"{where}.name") if isinstance(node, Mapping) else None
    hints = builder_hints(builder, fixed, positional) if builder is not None else {}
    return parse(where, node, cls, options=hints)


def build(registry: Registry[Callable[..., Any]], choice: Choice, positional: Sequence[Any] = (),
          **fixed: Any) -> Any:
    """Build the entry a checked `Choice` names with its options:
    `{name: adamw, lr: 1e-3}` → `OPTIMIZERS["adamw"](*positional, **fixed, lr=1e-3)`. The
    builder's own TypeError or ValueError (a negative learning rate) is a one-line error."""
    try:
        return registry[choice.name](*positional, **fixed, **choice.options)
    except (TypeError, ValueError) as err:
        raise RegrunError(f"{registry.kind} {choice.name!r}: {err}") from err
