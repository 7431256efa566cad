"""regrun: a command-line experiment runner for regularization research in PyTorch.

From Python: `regrun.train(overrides)` and `regrun.compare(paths)` (see regrun/api.py),
imported on first use, so that `import regrun` stays light (no torch, no Hydra).
"""

from typing import Any

__all__ = ["__version__", "compare", "train"]


def __getattr__(name: str) -> Any:
    """`regrun.__version__` (the installed package's, written once in pyproject.toml), and
    `regrun.train` and `regrun.compare`, loaded from regrun.api when first asked for."""
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("regrun")
        except metadata.PackageNotFoundError:  # a checkout on the path, never installed
            return "0+unknown"
    if name in __all__:
        from regrun import api

        return getattr(api, name)
    raise AttributeError(f"module 'regrun' has no attribute {name!r}")
