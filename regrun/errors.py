"""The one exception type a user sees (a bad config, path or flag, said in one line), and
the small checks of config values that raise it."""

from collections.abc import Iterable


class RegrunError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


def one_line(err: BaseException) -> str:
    """`Type: first line of the message`, for an error raised by the user's code."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def is_number(value: object) -> bool:
    """An int or a float; a bool is not a number in a config (`lambda: true` is a mistake)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(where: str, value: object, or_null: bool = False) -> int | None:
    """`value` if it is an integer ≥ 1 (or None where `or_null`), else a one-line error."""
    if value is None and or_null:
        return None
    if not is_number(value) or not isinstance(value, int) or value < 1:
        allowed = "a positive integer or null" if or_null else "a positive integer"
        raise RegrunError(f"{where} must be {allowed}, got {value!r}")
    return value


def choices(values: Iterable[object], limit: int = 40) -> str:
    """Format the allowed values for an error message, shortened when there are many."""
    items = [str(v) for v in values]
    if len(items) > limit:
        items = [*items[:limit], f"... ({len(items) - limit} more)"]
    return ", ".join(items) if items else "(none)"
