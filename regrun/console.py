"""The one rich console everything prints through (tables, progress, log lines).

Kept free of torch, so that `regrun compare` starts in a blink.
"""

import os
from typing import Any

from rich import get_console
from rich.console import Console

LOG_WIDTH = 160  # columns when the output is a file or a pipe: rich would assume 80 and cut tables


def shared_console() -> Console:
    """rich's global console (the one the logging handler writes to), sized for its output."""
    console = get_console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = max(console.width, LOG_WIDTH)
    return console


def format_value(value: Any) -> str:
    """A value as a table shows it: numbers to 4 significant digits, blanks (None) empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
