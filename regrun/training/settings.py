"""The trainer's settings (the `trainer` config node, validated) and the device it names."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch

from regrun.errors import RegrunError
from regrun.layout import STEPS
from regrun.schema import AtLeast, parse

Count = Annotated[int, AtLeast(1)]


@dataclass(frozen=True)
class TrainerSettings:
    """The `trainer` config node, validated."""

    epochs: Count
    batch_size: Count
    device: str | int = "auto"  # `trainer.device=0` arrives as an int; pick_device says what is allowed
    log_every: Count = 50  # steps between progress updates (each one syncs with the device)
    # every N optimisation steps, that step's loss terms and λ as a row of steps.csv; 0: none
    log_steps: Annotated[int, AtLeast(0), f"0: no {STEPS}"] = 0
    eval_every: Count = 1  # epochs between test-set evaluations; the last epoch always has one
    eval_batch_size: Count = 1000
    # epochs between checkpoints; 0: only when interrupted
    checkpoint_every: Annotated[int, AtLeast(0), "0: only when interrupted"] = 1

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "TrainerSettings":
        """Check every key and number; a bad one is a one-line `RegrunError`."""
        return parse("trainer", cfg, cls)


def pick_device(name: str | int) -> torch.device:
    """`auto` (CUDA when there is a GPU, else CPU), `cpu`, `cuda` or `cuda:N`."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RegrunError(f"trainer.device={name}: no CUDA GPU is visible to torch; use auto or cpu")
        return torch.device(name)
    raise RegrunError(f"trainer.device: unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N")
