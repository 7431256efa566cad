"""Typed config values: one checker for every option of every component.

A component's schema is its builder's signature. Each keyword option is checked against
its annotation, or, when it has none, against the type of its default (so torch's
optimizers, whose `lr=1e-3` is unannotated, are checked too). Ranges ride on the
annotation with `typing.Annotated`:

    def mlp(input_shape, num_outputs, hidden: Annotated[Sequence[int], AtLeast(1)] = (256,),
            dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0) -> nn.Module: ...

Strict where YAML and the command line are loose: a bool is not a number, "1e-3" (a
string) is not a float, 2.0 is not an int. A bad value is a one-line `RegrunError` that
names the key, says what is allowed and shows the value. A plain string beside the range
is a note for the message: `Annotated[int, AtLeast(0), "0: only when interrupted"]`.

A config node with keys of its own is a frozen dataclass read by `parse`: its fields are
the node's keys (their annotations the types), a field without a default is required,
and a key no field names is an error listing the allowed ones, unless the class keeps
such keys as a component's options (a field marked `OPTIONS`, checked against the
component's schema). The whole config is read this way, once, before a run starts.
Kept free of torch.
"""

import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

from regrun.errors import RegrunError, choices


@dataclass(frozen=True)
class Range:
    """Numbers between lo and hi (either may be None: unbounded); ends included unless open."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, value: float) -> bool:
        """Whether `value` lies in the range."""
        above = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def describe(self) -> str:
        """'≥ 1', 'in [0, 1)', '> 0'."""
        lo, hi = _number_text(self.lo), _number_text(self.hi)
        if self.hi is None:
            return f"{'>' if self.lo_open else '≥'} {lo}" if self.lo is not None else ""
        if self.lo is None:
            return f"{'<' if self.hi_open else '≤'} {hi}"
        return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


def _number_text(value: float | None) -> str:
    """Whole numbers in full (a seed's bound 4294967295), others as %g."""
    if value is None:
        return ""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return f"{value:g}"


def AtLeast(lo: float) -> Range:
    """Numbers ≥ lo."""
    return Range(lo)


POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)


class SchemaError(Exception):
    """A value does not fit its type: carries what is allowed, for the one-line message."""

    def __init__(self, allowed: str):
        super().__init__(allowed)
        self.allowed = allowed


def check(where: str, value: Any, hint: Any) -> Any:
    """`value` if it fits the type `hint`, else a one-line RegrunError naming `where`.

    A name that is not one of a choice of names reads as the registries' lookups do:
    `model.norm: unknown norm 'group'; allowed: batch, instance, layer, none`."""
    try:
        return _check(value, hint)
    except SchemaError as err:
        if isinstance(value, str) and (names := _names(hint)):
            key = where.rsplit(".", 1)[-1]
            raise RegrunError(f"{where}: unknown {key} {value!r}; allowed: {choices(names)}") from None
        raise RegrunError(f"{where} must be {err.allowed}, got {value!r}") from None


def _names(hint: Any) -> tuple[str, ...]:
    """The names of a Literal of strings (optional or not); () for any other type."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = inner[0] if len(inner) == 1 else None
    args = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
    return args if args and all(isinstance(a, str) for a in args) else ()


def _check(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        checked = _inner(value, args[0], hint)
        if not all(_within(checked, rng) for rng in args[1:] if isinstance(rng, Range)):
            raise SchemaError(describe(hint))
        return checked
    if origin in (Union, types.UnionType):
        for option in _config_types(args):
            try:
                return _check(value, option)
            except SchemaError:
                continue
        raise SchemaError(describe(hint))
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise SchemaError(describe(hint))
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        return _check_sequence(value, hint, origin, args)
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise SchemaError(describe(hint))
        return value
    return _check_scalar(value, hint)


def _check_sequence(value: Any, hint: Any, origin: Any, args: tuple) -> Any:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SchemaError(describe(hint))
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise SchemaError(describe(hint))
        return [_inner(v, a, hint) for v, a in zip(value, args)]
    item = args[0] if args else Any
    return [_inner(v, item, hint) for v in value]


def _inner(value: Any, hint: Any, outer: Any) -> Any:
    try:
        return _check(value, hint)
    except SchemaError:
        raise SchemaError(describe(outer)) from None


# The scalar types a config value can have: what each is called, and its test (strict:
# a bool is not an int, a NaN is not a number).
SCALARS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    type(None): ("null", lambda v: v is None),
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)),
    str: ("a string", lambda v: isinstance(v, str)),
}


def _check_scalar(value: Any, hint: Any) -> Any:
    hint = type(None) if hint is None else hint
    if hint not in SCALARS:  # Any, or a type no config value has (a tensor, a module): the builder checks it
        return value
    allowed, fits = SCALARS[hint]
    if not fits(value):
        raise SchemaError(allowed)
    return value


CONFIG_SCALARS = (bool, int, float, str, type(None))


def _config_types(hints: tuple) -> tuple:
    """The members of a union a config value can be (torch's `float | Tensor` is a float here)."""
    kept = tuple(h for h in hints if h in CONFIG_SCALARS or typing.get_origin(h) is not None or h in (list, tuple, dict))
    return kept or hints


def _within(value: Any, rng: Range) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and rng.holds(v)
               for v in values)


def describe(hint: Any) -> str:
    """What a type allows, in words: 'a list of integers ≥ 1', 'a number in [0, 1)'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        ranges = [a for a in args[1:] if isinstance(a, Range)]
        notes = "".join(f" ({a})" for a in args[1:] if isinstance(a, str))
        if args[0] is int and ranges == [Range(1)]:
            return "a positive integer" + notes
        base = describe(args[0])
        if args[0] is float and ranges and all(r.hi is None for r in ranges):  # bounded below only: inf is refused too
            base = "a finite number"
        return f"{base} {' '.join(r.describe() for r in ranges)}".strip() + notes
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in _config_types(args))
    if origin is Literal:
        return f"one of {choices(_config_spelling(a) for a in args)}"
    if origin in (dict, Mapping):
        return "a mapping"
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(describe(a) for a in args)})"
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        item = args[0] if args else Any
        return f"a list of {_plural(describe(item))}" if item is not Any else "a list"
    if hint in SCALARS or hint is None:
        return SCALARS[type(None) if hint is None else hint][0]
    return "a mapping" if hint is dict else getattr(hint, "__name__", str(hint))


def _config_spelling(value: Any) -> str:
    """A value as YAML and the command line spell it: true, false, null."""
    if value is True or value is False or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def _plural(text: str) -> str:
    for single, many in (("an integer", "integers"), ("a number", "numbers"), ("a finite number", "finite numbers"),
                         ("a positive integer", "positive integers"), ("a string", "strings"),
                         ("true or false", "booleans")):
        if text.startswith(single):
            return many + text[len(single):]
    return text


def option_hints(builder: Callable[..., Any]) -> dict[str, Any]:
    """Each keyword option's type: its annotation, else the type of its default (None: any)."""
    # A class's options are its __init__'s (torch's optimizers annotate them there); a
    # partial's are its function's (get_type_hints refuses a partial).
    target: Any = builder.func if isinstance(builder, functools.partial) else builder
    try:
        target = typing.cast(Any, target).__init__ if isinstance(target, type) else target
        annotations = typing.get_type_hints(target, include_extras=True)
    except Exception:  # a builder whose annotations do not resolve: fall back to defaults
        annotations = {}
    hints: dict[str, Any] = {}
    for name, param in inspect.signature(builder).parameters.items():
        if name in annotations:
            hints[name] = annotations[name]
        elif param.default is not inspect.Parameter.empty and param.default is not None:
            hints[name] = _default_type(param.default)
    return hints


def _default_type(default: Any) -> Any:
    if isinstance(default, bool):
        return bool
    if isinstance(default, int | float):
        return float  # an int default (momentum=0) still takes 0.9
    if isinstance(default, str):
        return str
    if isinstance(default, tuple | list) and default and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                             for v in default):
        return tuple.__class_getitem__((float,) * len(default))  # tuple[float, float] for betas=(0.9, 0.999)
    return Any


def check_options(builder: Callable[..., Any], options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Every option checked against the builder's schema; returns them (sequences as lists)."""
    hints = option_hints(builder)
    return {key: check(f"{where}.{key}", value, hints[key]) if key in hints else value
            for key, value in options.items()}


D = TypeVar("D", bound="DataclassInstance")
# Marks the field of a node's dataclass that keeps the keys no other field names: the
# options of the component the node builds (a model's width, an optimizer's lr).
OPTIONS = {"options": True}
# Marks a dataclass field whose keys sit in the same node (a target's schedule keys).
FLATTEN = {"flatten": True}


def key_of(field: dataclasses.Field) -> str:
    """The config key a dataclass field reads: its name, or `metadata["key"]` (`lambda`,
    which is no Python name)."""
    return field.metadata.get("key", field.name)


def node_keys(cls: type) -> list[str]:
    """The keys a node read as `cls` may hold besides its options, in field order."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("flatten"):
            keys += node_keys(hints[f.name])
        elif not f.metadata.get("options"):
            keys.append(key_of(f))
    return keys


def parse(where: str, node: object, cls: type[D], options: Mapping[str, Any] | None = None,
          **given: Any) -> D:
    """The config node `node` at `where` read as the frozen dataclass `cls`, every value checked.

    Each field's key is checked against the field's annotation; a nested dataclass field is
    read by `parse` in turn, and a `dict[str, Dataclass]` field entry by entry. Fields in
    `given` were read by the caller (they need context this node lacks) and are taken as
    they are. Keys no field names go to the field marked `OPTIONS`, checked against
    `options` (name → type hint; None: any key is an option); without such a field they
    are unknown. After construction, the instance's `validate(where)`, if it has one,
    checks what spans several keys. Every error is a one-line `RegrunError`.
    """
    known = node_keys(cls)
    if not isinstance(node, Mapping):
        keeps_options = any(f.metadata.get("options") for f in dataclasses.fields(cls))
        raise RegrunError(f"{where or 'the config'} must be a mapping of {choices(known)}"
                          f"{' and options' if keeps_options else ''}, got {node!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    values: dict[str, Any] = {}
    kept = None
    for field in dataclasses.fields(cls):
        key = key_of(field)
        if field.metadata.get("options"):
            kept = field.name
        elif field.metadata.get("flatten"):
            inner = hints[field.name]
            values[field.name] = parse(where, {k: v for k, v in node.items() if k in node_keys(inner)}, inner)
        elif field.name in given:
            values[field.name] = given[field.name]
        elif key in node:
            values[field.name] = _read(_join(where, key), node[key], hints[field.name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            required = [key_of(f) for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING and not f.metadata]
            raise RegrunError(f"{where or 'the config'}: missing {key!r} (required: {choices(required)})")
    rest = {key: value for key, value in node.items() if key not in known}
    if kept is not None:
        values[kept] = _options(where, rest, known, options)
    elif rest:
        _unknown(where, next(iter(rest)), known)
    parsed = cls(**values)
    if callable(validate := getattr(parsed, "validate", None)):
        validate(where)
    return parsed


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _unknown(where: str, key: object, allowed: Sequence[str]) -> typing.NoReturn:
    kind = "unknown key" if where else "unknown top-level key"
    raise RegrunError(f"{_join(where, key)}: {kind}; allowed: {choices(allowed)}")


def _read(where: str, value: Any, hint: Any) -> Any:
    """One key's value: a nested node read as its dataclass (by its `from_node(where, node)`
    when the class has one: it reads what depends on the node's own values), or a value
    checked against its type."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _node(where, value, hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args and len(args) == 2:  # an optional node
        inner = next(a for a in args if a is not type(None))
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            return None if value is None else _node(where, value, inner)
    if origin in (dict, Mapping) and len(args) == 2 and isinstance(args[1], type) and dataclasses.is_dataclass(args[1]):
        if not isinstance(value, Mapping):
            raise RegrunError(f"{where} must be a mapping of names to {args[1].__name__} nodes, got {value!r}")
        return {name: _node(_join(where, name), spec, args[1]) for name, spec in value.items()}
    return check(where, value, hint)


def _node(where: str, value: Any, cls: type) -> Any:
    reader = getattr(cls, "from_node", None)
    return reader(where, value) if reader is not None else parse(where, value, cls)


def _options(where: str, rest: Mapping[str, Any], known: Sequence[str], hints: Mapping[str, Any] | None) -> dict[str, Any]:
    """A component's options: each a key of its schema `hints` (None: any key), checked."""
    if hints is None:
        return dict(rest)
    for key in rest:
        if key not in hints:
            _unknown(where, key, [*known, *hints])
    return {key: check(_join(where, key), value, hints[key]) for key, value in rest.items()}


def read_node(where: str, node: Any, cls: type[D]) -> D:
    """`node` as `cls`: itself when it is one already, else read (by the class's `from_node`
    when it has one, as `parse` reads a nested node). Lets the builders that take checked
    settings also take a plain mapping, from a notebook, a plugin's test or a script."""
    return node if isinstance(node, cls) else _node(where, node, cls)
