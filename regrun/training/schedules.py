"""λ schedules: how strong a target's penalty is at each optimisation step.

A target's `lambda` is its full strength; its schedule scales it by a factor in [0, 1]
that depends only on the global step, so a resumed run computes the same λ again:

    start_epoch, end_epoch   the window (1-based epochs, both included, as in metrics.csv)
                             outside which the penalty is off (Distiller's schedule);
                             null end: until the last epoch
    warmup_steps             λ rises linearly from 0 over the window's first N steps
                             (SAELens's l1 warm-up): factor min(1, k / N) at the window's
                             k-th step, so it is full from step N on
    decay, decay_to          after the warm-up, λ falls from full to decay_to·λ at the
                             window's last step: linear, or cosine (half a period); none keeps it

factor(step) = warmup(k) · decay(p), k = step − first + 1, p = (step − first) / (last − first),
with first and last the window's first and last global steps (steps count from 1).
"""

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from regrun.errors import RegrunError
from regrun.schema import FRACTION, AtLeast

Decay = Literal["none", "linear", "cosine"]


@dataclass(frozen=True)
class Schedule:
    """A target's λ schedule (its keys in the target's node); the default is a constant λ
    from the first step to the last."""

    warmup_steps: Annotated[int, AtLeast(0)] = 0
    start_epoch: Annotated[int, AtLeast(1)] = 1
    end_epoch: Annotated[int, AtLeast(1)] | None = None
    decay: Decay = "none"
    decay_to: Annotated[float, FRACTION, "a fraction of lambda"] = 0.0

    def validate(self, where: str) -> None:
        """What spans two keys: a window that ends before it starts, a decay_to without a decay."""
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise RegrunError(f"{where}.end_epoch must be an integer ≥ {self.start_epoch} (start_epoch), "
                              f"got {self.end_epoch}")
        if self.decay == "none" and self.decay_to != 0.0:
            raise RegrunError(f"{where}.decay_to needs {where}.decay=linear or cosine; allowed decays: "
                              "none, linear, cosine")

    @property
    def constant(self) -> bool:
        """True when λ never changes (no window, warm-up or decay)."""
        return self == Schedule()

    def factor(self, step: int, steps_per_epoch: int, epochs: int) -> float:
        """The fraction of λ in effect at global optimisation step `step` (1-based)."""
        first = (self.start_epoch - 1) * steps_per_epoch + 1
        last = min(self.end_epoch or epochs, epochs) * steps_per_epoch
        if step < first or step > last:
            return 0.0
        warm = min(1.0, (step - first + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return warm * self._decayed((step - first) / (last - first) if last > first else 0.0)

    def _decayed(self, progress: float) -> float:
        if self.decay == "linear":
            return 1.0 - (1.0 - self.decay_to) * progress
        if self.decay == "cosine":
            return self.decay_to + (1.0 - self.decay_to) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0
