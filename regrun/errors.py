"""The one exception type a user sees (a bad config, path or flag, said in one line), and
the small checks of config values that raise it."""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeGuard


class RegrunError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


def one_line(err: BaseException) -> str:
    """`Type: first line of the message`, for an error raised by the user's code."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def is_number(value: object) -> TypeGuard[int | float]:
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


class UserExit(RegrunError):
    """User or plugin code called `sys.exit` (or raised another BaseException that is not
    the user's stop): contained, so that it ends a run as `failed`, never the process."""


# What user code may raise through regrun: the user's own stop (Ctrl-C, and regrun's stop
# signals, which are KeyboardInterrupts) and a generator's close.
PASSING = (KeyboardInterrupt, GeneratorExit)


def exit_description(err: BaseException) -> str:
    """'called sys.exit(7) (my_models.py:12, in forward)': what the code did, and where."""
    if isinstance(err, SystemExit):
        what = f"called sys.exit({'' if err.code is None else repr(err.code)})"
    else:
        what = f"raised {type(err).__name__}" + (f": {str(err).splitlines()[0]}" if str(err).strip() else "")
    return f"{what} ({raised_at(err)})" if raised_at(err) else what


def raised_at(err: BaseException) -> str:
    """'my_models.py:12, in forward': the innermost Python frame the exception came from."""
    tb = err.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}, in {code.co_name}"


@contextmanager
def contained(where: str | Callable[[BaseException], str]) -> Iterator[None]:
    """Run user or plugin code: a `SystemExit` (or another BaseException but those in
    PASSING) from it becomes a `UserExit` saying `where` and what it did, e.g.
    'model.factory: my_models:make_net called sys.exit(0) (my_models.py:3, in make_net)'.
    `where` may be a function of the exception (to name the part of the code it came from)."""
    try:
        yield
    except (Exception, *PASSING):
        raise
    except BaseException as err:
        place = where(err) if callable(where) else where
        raise UserExit(f"{place} {exit_description(err)}") from err
