"""What a job returns to an optimizing sweeper (hydra/sweeper=optuna): one number to maximize.

The `objective` config node names a figure of the final metrics row (`metric`) and,
optionally, a floor on another (`constraint` ≥ `min`), e.g. the best accuracy among runs
whose targeted layer is at least 80% zeros. A run below the floor scores
metric − 1 − shortfall: worse than any run that meets it (for metrics in [0, 1]), and
better the closer it gets, so the search is pulled towards the floor.
"""

from collections.abc import Mapping
from typing import Any

from regrun.errors import RegrunError, is_number


# Figures every run has; per-target and per-layer ones are named penalty.* and sparsity.*.
FIGURES = ("test_acc", "test_loss", "train_task_loss", "train_penalty_total", "train_total_loss")


def check_objective(cfg: Mapping[str, Any]) -> None:
    """Refuse an objective naming no figure a run can have, before any training."""
    spec = cfg.get("objective") or {}
    for key in ("metric", "constraint"):
        name = spec.get(key)
        if (key == "metric" or name is not None) and not (
                name in FIGURES or str(name).startswith(("sparsity.", "penalty."))):
            raise RegrunError(f"objective.{key}={name!r}: not a figure of a run; allowed: "
                              f"{', '.join(FIGURES)}, penalty.<target>.*, sparsity.*")
    if not is_number(spec.get("min", 0.0)):
        raise RegrunError(f"objective.min must be a number, got {spec.get('min')!r}")


def objective(cfg: Mapping[str, Any], summary: Mapping[str, Any]) -> float | None:
    """The run's score for a sweeper; None for a run that did not complete.

    None, not NaN: the Optuna sweeper records a None as a failed trial and searches on,
    but crashes the whole sweep on a NaN (hydra-optuna-sweeper 1.3.0, optuna 2.10).
    """
    spec = cfg.get("objective")
    if not spec or summary["status"] != "completed":
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
        raise RegrunError(f"objective: {key} is {final[key]!r} in this run's summary.json, not a number")
    return float(final[key])
