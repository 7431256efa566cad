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
from collections.abc import Mapping
from dataclasses import dataclass

from regrun.errors import RegrunError, is_number

DECAYS = ("none", "linear", "cosine")
SCHEDULE_KEYS = ("warmup_steps", "start_epoch", "end_epoch", "decay", "decay_to")


@dataclass(frozen=True)
class Schedule:
    """A target's λ schedule; the default is a constant λ from the first step to the last."""

    warmup_steps: int = 0
    start_epoch: int = 1
    end_epoch: int | None = None
    decay: str = "none"
    decay_to: float = 0.0

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


def parse_schedule(where: str, spec: Mapping[str, object]) -> Schedule:
    """The schedule keys of a target spec, validated; absent keys keep the defaults."""
    warmup = _int(f"{where}.warmup_steps", spec.get("warmup_steps", 0), 0)
    start = _int(f"{where}.start_epoch", spec.get("start_epoch", 1), 1)
    end = spec.get("end_epoch")
    if end is not None:
        end = _int(f"{where}.end_epoch", end, start)
    decay = spec.get("decay", "none")
    if decay not in DECAYS:
        raise RegrunError(f"{where}.decay: unknown decay {decay!r}; allowed: {', '.join(DECAYS)}")
    decay_to = spec.get("decay_to", 0.0)
    if not is_number(decay_to) or not 0.0 <= decay_to <= 1.0:
        raise RegrunError(f"{where}.decay_to must be a number in [0, 1] (a fraction of lambda), got {decay_to!r}")
    if decay == "none" and decay_to != 0.0:
        raise RegrunError(f"{where}.decay_to needs {where}.decay=linear or cosine; allowed decays: {', '.join(DECAYS)}")
    return Schedule(warmup, start, end, str(decay), float(decay_to))


def _int(where: str, value: object, least: int) -> int:
    if not is_number(value) or not isinstance(value, int) or value < least:
        raise RegrunError(f"{where} must be an integer ≥ {least}, got {value!r}")
    return value
