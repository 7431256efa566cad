"""regrun: a command-line experiment runner for regularization research in PyTorch.

From Python: `regrun.train(overrides)` and `regrun.compare(paths)` (see regrun/api.py),
imported on first use, so that `import regrun` stays light (no torch, no Hydra).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["compare", "train"]


def __getattr__(name: str) -> Any:
    """`regrun.train` and `regrun.compare`, loaded from regrun.api when first asked for."""
    if name in __all__:
        from regrun import api

        return getattr(api, name)
    raise AttributeError(f"module 'regrun' has no attribute {name!r}")
