"""Typed config values: one checker for every option of every component.

A component's schema is its builder's signature. Each keyword option is checked against
its annotation, or, when it has none, against the type of its default (so torch's
optimizers, whose `lr=1e-3` is unannotated, are checked too). Ranges ride on the
annotation with `typing.Annotated`:

    def mlp(input_shape, num_outputs, hidden: Annotated[Sequence[int], AtLeast(1)] = (256,),
            dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0) -> nn.Module: ...

Strict where YAML and the command line are loose: a bool is not a number, "1e-3" (a
string) is not a float, 2.0 is not an int. A bad value is a one-line `RegrunError` that
names the key, says what is allowed and shows the value. Kept free of torch.
"""

import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

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
    """`value` if it fits the type `hint`, else a one-line RegrunError naming `where`."""
    try:
        return _check(value, hint)
    except SchemaError as err:
        raise RegrunError(f"{where} must be {err.allowed}, got {value!r}") from None


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
        ranges = " ".join(a.describe() for a in args[1:] if isinstance(a, Range))
        return f"{describe(args[0])} {ranges}".strip()
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in _config_types(args))
    if origin is Literal:
        return f"one of {choices(args)}"
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


def _plural(text: str) -> str:
    for single, many in (("an integer", "integers"), ("a number", "numbers"), ("a string", "strings"),
                         ("true or false", "booleans")):
        if text.startswith(single):
            return many + text[len(single):]
    return text


def option_hints(builder: Callable[..., Any]) -> dict[str, Any]:
    """Each keyword option's type: its annotation, else the type of its default (None: any)."""
    try:  # a class's options are its __init__'s (torch's optimizers annotate them there)
        annotations = typing.get_type_hints(builder.__init__ if isinstance(builder, type) else builder,
                                            include_extras=True)
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
        return tuple[(float,) * len(default)]
    return Any


def check_options(builder: Callable[..., Any], options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Every option checked against the builder's schema; returns them (sequences as lists)."""
    hints = option_hints(builder)
    return {key: check(f"{where}.{key}", value, hints[key]) if key in hints else value
            for key, value in options.items()}
