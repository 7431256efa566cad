"""What a model is worth at one point of training: the task's figures over a split and the
sparsity statistics of every layer, evaluated without gradients, and the headline sparsity
figures that become metrics columns."""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from regrun.components.datasets import Split, chunks
from regrun.components.models import ACTIVATION_TYPES
from regrun.components.tasks import Task
from regrun.layout import STRUCTURE_FIGURES, sparsity_column, split_figure
from regrun.measure.capture import forward_hooks
from regrun.measure.sparsity import ActivationStats, stat_modules, threshold_key, weight_stats


class Targeted(Protocol):
    """What the headline figures read of a regularization target."""

    @property
    def name(self) -> str: ...
    @property
    def on_activations(self) -> bool: ...
    @property
    def modules(self) -> Sequence[str]: ...  # the modules whose outputs it penalizes
    @property
    def params(self) -> Sequence[str]: ...  # the parameters it penalizes (weight targets)


@dataclass
class Evaluation:
    """The task's figures on the test set and the per-layer sparsity tables at one point of training."""

    figures: dict[str, float]  # the task's: {"loss": ..., "acc": ...}
    activations: dict[str, dict]
    weights: list[dict]


class EvaluationStopped(Exception):
    """A stop request came while a split was evaluated: the evaluation ends unfinished."""


def task_figures(model: nn.Module, task: Task, split: Split, batch_size: int,
                 stop: Callable[[], bool] = lambda: False) -> dict[str, float]:
    """The task's figures over a whole split, in eval mode and without gradients.

    `stop` is polled before each batch: once it is true, `EvaluationStopped` is raised, so
    a stop signal waits for one batch, not for the whole split."""
    running = task.running()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y in chunks(split, batch_size):
                if stop():
                    raise EvaluationStopped
                running.update(model(x), task.reference(x, y))
    finally:
        model.train(was_training)
    return running.result()


def evaluate(model: nn.Module, task: Task, split: Split, batch_size: int, thresholds: Sequence[float],
             stop: Callable[[], bool] = lambda: False) -> Evaluation:
    """The task's figures and the sparsity statistics over a whole split, without gradients
    (`stop`: as `task_figures` polls it)."""
    names = stat_modules(model)
    modules = dict(model.named_modules())
    stats = {name: ActivationStats() for name in names}
    with forward_hooks(model, names, lambda name, out: stats[name].update(out), strict=False):
        figures = task_figures(model, task, split, batch_size, stop)
    return Evaluation(
        figures=figures,
        # A module that never ran, or whose output holds no tensor, has no row.
        activations={name: {"type": type(modules[name]).__name__, **s.result()} for name, s in stats.items()
                     if s.samples},
        weights=weight_stats(model, thresholds),
    )


def headline(evaluation: Evaluation, targets: Sequence[Targeted], thresholds: Sequence[float]) -> dict[str, float]:
    """The sparsity figures worth a column in metrics.csv.

    - `sparsity.weights.*`: over all weight matrices and kernels (tensors of ≥ 2 dims);
    - `sparsity.<parameter>.zero_rows`, `.zero_cols` of each matrix, `.zero_filters`,
      `.zero_channels`, `.zero_kernels` of each kernel: its structured sparsity;
    - `sparsity.<module>.zero_frac`: test-set zero fraction of each activation-function
      module and of every module an activation target names;
    - `sparsity.<target>.*`: pooled over the tensors a target penalizes: for activations
      the zero fraction of outputs, `l0` (non-zero entries per sample, summed over its
      modules: a sparse code's active latents) and `dead_frac` (the fraction of its units
      zero on every test sample); for parameters the zero and below-threshold fractions.
    """
    first = threshold_key(thresholds[0]) if thresholds else None
    weights = {row["name"]: row for row in evaluation.weights}
    matrices = [row for row in evaluation.weights if len(row["shape"]) >= 2]
    figures = {sparsity_column("weights", "zero_frac"): _pooled(matrices, "zero_frac", "numel")}
    if first:
        figures[sparsity_column("weights", first)] = _pooled(matrices, first, "numel")
    for row in matrices:
        figures |= {sparsity_column(row["name"], key): row[key] for key in STRUCTURE_FIGURES if key in row}
    acts = evaluation.activations
    targeted = {m for t in targets if t.on_activations for m in t.modules}
    for name in acts:
        if name in targeted or acts[name]["type"] in ACTIVATION_TYPES:
            figures[sparsity_column(name, "zero_frac")] = acts[name]["zero_frac"]
    for t in targets:
        if t.on_activations:
            rows = [{**acts[m], "elements": acts[m]["samples"] * math.prod(acts[m]["shape"])} for m in t.modules]
            figures[sparsity_column(t.name, "zero_frac")] = _pooled(rows, "zero_frac", "elements")
            figures[sparsity_column(t.name, "l0")] = sum(r["l0"] for r in rows)
            figures[sparsity_column(t.name, "dead_frac")] = _pooled(rows, "dead_frac", "units")
        else:
            rows = [weights[p] for p in t.params]
            figures[sparsity_column(t.name, "zero_frac")] = _pooled(rows, "zero_frac", "numel")
            if first:
                figures[sparsity_column(t.name, first)] = _pooled(rows, first, "numel")
    return figures


def _pooled(rows: Sequence[Mapping[str, Any]], key: str, weight: str) -> float:
    """The element-weighted mean of `key` over rows (a fraction over all their elements)."""
    total = sum(r[weight] for r in rows)
    return sum(r[key] * r[weight] for r in rows) / total if total else 0.0


def split_row(split: str, figures: Mapping[str, float]) -> dict[str, float]:
    """A split's figures as metrics columns: {"acc": 0.9} → {"test_acc": 0.9}."""
    return {split_figure(split, name): value for name, value in figures.items()}


