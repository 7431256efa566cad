"""The one exception type a user sees: a bad config, path or flag, said in one line."""

from collections.abc import Iterable


class RegrunError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


def choices(values: Iterable[object], limit: int = 40) -> str:
    """Format the allowed values for an error message, shortened when there are many."""
    items = [str(v) for v in values]
    if len(items) > limit:
        items = items[:limit] + [f"... ({len(items) - limit} more)"]
    return ", ".join(items) if items else "(none)"
