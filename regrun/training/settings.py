"""The trainer's settings (the `trainer` config node, validated) and the device it names."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from regrun.errors import RegrunError, positive_int


@dataclass(frozen=True)
class TrainerSettings:
    """The `trainer` config node, validated."""

    epochs: int
    batch_size: int
    device: str = "auto"
    log_every: int = 50  # steps between progress updates (each one syncs with the device)
    eval_every: int = 1  # epochs between test-set evaluations; the last epoch always has one
    eval_batch_size: int = 1000
    checkpoint_every: int = 1  # epochs between checkpoints; 0: only when interrupted

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "TrainerSettings":
        """Check every key and number; a bad one is a one-line `RegrunError`."""
        allowed = cls.__dataclass_fields__
        for key in cfg:
            if key not in allowed:
                raise RegrunError(f"trainer.{key}: unknown key; allowed: {', '.join(allowed)}")
        for key in ("epochs", "batch_size", "log_every", "eval_every", "eval_batch_size"):
            positive_int(f"trainer.{key}", cfg.get(key, getattr(cls, key, None)))
        every = cfg.get("checkpoint_every", cls.checkpoint_every)
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise RegrunError(f"trainer.checkpoint_every must be an integer ≥ 0 (0: only when interrupted), got {every!r}")
        return cls(**cfg)


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when there is a GPU, else CPU), `cpu`, `cuda` or `cuda:N`."""
    name = str(name)  # `trainer.device=0` arrives as an int
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RegrunError(f"trainer.device={name}: no CUDA GPU is visible to torch; use auto or cpu")
        return torch.device(name)
    raise RegrunError(f"trainer.device: unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N")
