"""What a job returns to an optimizing sweeper (hydra/sweeper=optuna): one number to maximize.

The `objective` config node names a figure of the final metrics row (`metric`; null: the
task's headline figure, on the validation split when there is one) and, optionally, a
floor on another (`constraint` ≥ `min`), e.g. the best accuracy among runs whose targeted
layer is at least 80% zeros. A run below the floor scores metric − 1 − shortfall: worse
than any run that meets it (for metrics in [0, 1]), and better the closer it gets, so the
search is pulled towards the floor.

The task's figures are allowed on every split the run evaluates: with `dataset.val_size`,
a sweeper can choose λ on validation figures, never on the test set.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regrun.components.tasks import Task
from regrun.errors import RegrunError, choices, is_number
from regrun.layout import COMPLETED, PENALTY, PENALTY_TOTAL, SPARSITY, SUMMARY, TASK_LOSS, TOTAL_LOSS, split_figure

# Figures every run has besides the task's; per-target and per-layer ones are penalty.* and sparsity.*.
TRAIN_FIGURES = (TASK_LOSS, PENALTY_TOTAL, TOTAL_LOSS)


@dataclass(frozen=True)
class ObjectiveSettings:
    """The `objective` node: the figure to maximize (null: the task's headline) and an
    optional floor `constraint` ≥ `min`."""

    metric: str | None = None
    constraint: str | None = None
    min: float = 0.0


def check_objective(settings: ObjectiveSettings | None, task: Task, splits: Sequence[str]) -> dict[str, Any] | None:
    """The objective with its metric resolved; a figure the run will not have is refused
    before any training. `splits` are those the run evaluates, the first the preferred."""
    if settings is None:
        return None
    figures = [split_figure(split, name) for split in splits for name in task.figures] + list(TRAIN_FIGURES)
    resolved = {"metric": settings.metric or split_figure(splits[0], task.headline),
                "constraint": settings.constraint, "min": settings.min}
    for key in ("metric", "constraint"):
        name = resolved[key]
        if (key == "metric" or name is not None) and not (
                name in figures or str(name).startswith((SPARSITY, PENALTY))):
            raise RegrunError(f"objective.{key}={name!r}: not a figure of this run; allowed: "
                              f"{choices(figures)}, {PENALTY}<target>.*, {SPARSITY}*")
    return resolved


def objective(summary: Mapping[str, Any]) -> float | None:
    """The run's score for a sweeper; None for a run that did not complete or has no objective.

    None, not NaN: the Optuna sweeper records a None as a failed trial and searches on,
    but crashes the whole sweep on a NaN (hydra-optuna-sweeper 1.3.0, optuna 2.10).
    """
    spec = summary.get("objective")  # resolved by check_objective when the run started
    if not spec or summary.get("status") != COMPLETED:
        return None
    final = summary["final"]
    value = _figure(final, spec["metric"])
    if spec.get("constraint"):
        shortfall = spec.get("min", 0.0) - _figure(final, spec["constraint"])
        if shortfall > 0:
            return value - 1.0 - shortfall
    return value


def _figure(final: Mapping[str, Any], key: str) -> float:
    if key not in final:
        raise RegrunError(f"objective: {key!r} is not a figure of this run; allowed: {', '.join(sorted(final))}")
    if not is_number(final[key]):  # a damaged summary.json of a run this job found completed
        raise RegrunError(f"objective: {key} is {final[key]!r} in this run's {SUMMARY}, not a number")
    return float(final[key])
