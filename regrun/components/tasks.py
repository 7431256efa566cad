"""Tasks by name: what the model's output is compared with, the loss, and the figures.

A task record says how a run is trained and judged, whatever the model and the data:

    classification   cross-entropy against integer labels; figures loss, acc
    regression       mean squared error against float targets; figures loss (MSE), r2, mae
    reconstruction   mean squared error against the input itself; figures loss (MSE), psnr

A dataset names its natural task (integer targets: classification, float: regression);
`task=NAME` overrides it. The evaluation figures are computed with running sums on the
device over a whole split, one synchronisation at the end, no per-sample Python:

- R² = 1 − SSE/SST over all target entries of the split, SST from the running Σy and Σy²
  (about a shift taken from the first chunk, so that large means lose no precision);
- PSNR = 10·log10(peak²/MSE) in dB, with peak = max − min of the split's inputs as the
  model sees them (after the dataset's normalisation). An affine normalisation scales
  peak and error alike, so the figure equals the PSNR of the raw pixels in their range.

A plugin registers its own record (`register_task`, or the `regrun.tasks` entry points).
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from regrun.components.datasets import DataSpec
from regrun.components.registry import Registry
from regrun.errors import RegrunError
from regrun.layout import split_figure
from regrun.schema import read_node


class RunningFigures(Protocol):
    """Running sums of a task's figures over the chunks of a split."""

    def update(self, output: Tensor, reference: Tensor) -> None:
        """Add a chunk: the model's output and what it is compared with."""

    def result(self) -> dict[str, float]:
        """The figures over every chunk added, one number per figure name."""


Shape = tuple[int, ...]


@dataclass(frozen=True)
class Task:
    """One task: its loss, what the output is compared with, and how a split is judged."""

    loss: Callable[[Tensor, Tensor], Tensor]  # (output, reference) → mean over the batch
    compared_with: Literal["targets", "inputs"]  # the data's targets, or the input itself
    output_shapes: Callable[[DataSpec], list[Shape]]  # per-sample shapes the output may have; first: canonical
    targets: Literal["labels", "values"] | None  # what the data's targets must be (None: anything)
    running: Callable[[], RunningFigures]  # a fresh accumulator of the figures
    figures: Mapping[str, str]  # figure name → what people call it, in column order; "loss" first
    headline: str  # the figure that sums a run up (compare's leading column, the plots' y)
    higher_is_better: bool  # of the headline figure
    # What a predictor that learned nothing outputs for a split, given what it is compared
    # with, and its description: the chance level the diagnostics compare a run with.
    trivial: Callable[[Tensor], Tensor] | None = None
    trivial_is: str = ""

    def num_outputs(self, spec: DataSpec) -> int:
        """The width the model's output must have: `num_outputs` of the model builders."""
        return math.prod(self.output_shapes(spec)[0])

    def reference(self, x: Tensor, y: Tensor) -> Tensor:
        """What the output of `model(x)` is compared with."""
        return x if self.compared_with == "inputs" else y


def _flat(output: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    """Output and reference as (B, entries): a model may give (B, n) or (B, *shape)."""
    return output.reshape(len(output), -1), reference.reshape(len(reference), -1).to(output.dtype)


def mse(output: Tensor, reference: Tensor) -> Tensor:
    """Mean squared error over the batch and the entries of each sample (nn.MSELoss)."""
    return F.mse_loss(*_flat(output, reference))


class _Sums:
    """float64 running sums on the device, read back once."""

    def __init__(self) -> None:
        self.sums: Tensor | None = None

    def add(self, *terms: Tensor) -> None:
        values = torch.stack([t.double() for t in terms])
        self.sums = values if self.sums is None else self.sums + values

    def values(self) -> list[float]:
        if self.sums is None:
            raise RegrunError("a task's figures need at least one sample; the split is empty")
        return self.sums.tolist()


class ClassificationFigures:
    """loss (mean cross-entropy) and acc (fraction of arg-max hits)."""

    def __init__(self) -> None:
        self._sums = _Sums()

    def update(self, output: Tensor, reference: Tensor) -> None:
        """Add a chunk of logits (B, C) and labels (B,)."""
        hits = (output.argmax(1) == reference).sum()
        self._sums.add(F.cross_entropy(output, reference, reduction="sum"), hits, torch.tensor(len(reference)))

    def result(self) -> dict[str, float]:
        """loss and acc over the chunks added."""
        loss, hits, n = self._sums.values()
        return {"loss": loss / n, "acc": hits / n}


class RegressionFigures:
    """loss (MSE), r2 (1 − SSE/SST over all entries) and mae, from running sums."""

    def __init__(self) -> None:
        self._sums = _Sums()
        self._shift: Tensor | None = None  # Σ(y − c) and Σ(y − c)² about c keep float64 exact enough

    def update(self, output: Tensor, reference: Tensor) -> None:
        """Add a chunk of outputs and targets of matching size per sample."""
        out, ref = _flat(output, reference)
        if self._shift is None:
            self._shift = ref.double().mean()
        error = out - ref
        centred = ref.double() - self._shift
        self._sums.add(error.square().sum(), error.abs().sum(), centred.sum(), centred.square().sum(),
                       torch.tensor(ref.numel()))

    def result(self) -> dict[str, float]:
        """loss, r2 and mae over every target entry added; r2 is NaN when the targets are constant."""
        sse, sae, sum_y, sum_y2, n = self._sums.values()
        sst = sum_y2 - sum_y * sum_y / n
        return {"loss": sse / n, "r2": 1.0 - sse / sst if sst > 0 else math.nan, "mae": sae / n}


class ReconstructionFigures:
    """loss (MSE), psnr (dB, peak = max − min of the split's inputs) and fvu, the fraction of
    variance unexplained: Σ‖x − x̂‖² / Σ‖x − x̄‖², x̄ the split's mean input (per entry), as
    SAELens reports it for a sparse autoencoder: 0 is perfect, 1 is no better than x̄."""

    def __init__(self) -> None:
        self._sums = _Sums()
        self._low: Tensor | None = None
        self._high: Tensor | None = None
        self._shift: Tensor | None = None  # the first chunk's mean input: sums about it stay exact in float64
        self._centred: Tensor | None = None  # per entry: Σ(x − c), Σ(x − c)²

    def update(self, output: Tensor, reference: Tensor) -> None:
        """Add a chunk of reconstructions and the inputs they reconstruct."""
        out, ref = _flat(output, reference)
        self._sums.add((out - ref).square().sum(), torch.tensor(ref.numel()), torch.tensor(len(ref)))
        low, high = ref.min(), ref.max()
        self._low = low if self._low is None else torch.minimum(self._low, low)
        self._high = high if self._high is None else torch.maximum(self._high, high)
        if self._shift is None:
            self._shift = ref.double().mean(0)
        centred = ref.double() - self._shift
        sums = torch.stack([centred.sum(0), centred.square().sum(0)])
        self._centred = sums if self._centred is None else self._centred + sums

    def result(self) -> dict[str, float]:
        """loss, psnr and fvu over the chunks added (fvu is NaN when every input is the same)."""
        sse, n, samples = self._sums.values()
        assert self._low is not None and self._high is not None and self._centred is not None, "update comes first"
        error, peak = sse / n, (self._high - self._low).item()
        total, squares = self._centred
        variance = (squares - total * total / samples).sum().item()  # Σ‖x − x̄‖² over the split
        return {"loss": error, "psnr": _psnr(peak, error), "fvu": sse / variance if variance > 0 else math.nan}


def _psnr(peak: float, error: float) -> float:
    """10·log10(peak²/MSE): inf for a perfect reconstruction, −inf for inputs without range."""
    if error == 0:
        return math.inf
    return 10 * math.log10(peak * peak / error) if peak > 0 else -math.inf


def _classes(spec: DataSpec) -> list[Shape]:
    return [(spec.num_classes or 0,)]


def _target_shapes(spec: DataSpec) -> list[Shape]:
    return [(math.prod(spec.target_shape),), spec.target_shape]


def _input_shapes(spec: DataSpec) -> list[Shape]:
    return [(math.prod(spec.input_shape),), spec.input_shape]


def _class_frequencies(labels: Tensor) -> Tensor:
    """Logits log p(class) from the split's label frequencies: the best constant predictor
    (its accuracy is the most frequent class's share, its loss the labels' entropy)."""
    frequencies = torch.bincount(labels).double() / len(labels)
    return frequencies.clamp_min(1e-12).log().float().expand(len(labels), -1)


def _mean_value(reference: Tensor) -> Tensor:
    """The split's mean value everywhere (per entry for targets, one value for inputs)."""
    return reference.float().mean().expand(reference.shape)


CLASSIFICATION = Task(F.cross_entropy, "targets", _classes, "labels", ClassificationFigures,
                      {"loss": "loss", "acc": "accuracy"}, "acc", True,
                      _class_frequencies, "always predicting the most frequent class")
REGRESSION = Task(mse, "targets", _target_shapes, "values", RegressionFigures,
                  {"loss": "loss (MSE)", "r2": "R²", "mae": "mean absolute error"}, "r2", True,
                  _mean_value, "predicting the mean target")
RECONSTRUCTION = Task(mse, "inputs", _input_shapes, None, ReconstructionFigures,
                      {"loss": "loss (MSE)", "psnr": "PSNR (dB)", "fvu": "fraction of variance unexplained"},
                      "psnr", True,
                      _mean_value, "outputting the mean input value everywhere")


def trivial_figures(task: Task, x: Tensor, y: Tensor) -> dict[str, float] | None:
    """The task's figures for the trivial predictor on a split (None when the task has none),
    computed by the task's own accumulator, so they follow the figures' definitions."""
    if task.trivial is None:
        return None
    reference = task.reference(x, y)
    running = task.running()
    running.update(task.trivial(reference), reference)
    return running.result()

TASKS: Registry[Task] = Registry("task", "regrun.tasks")


def register_task(name: str, task: Task, replace: bool = False) -> None:
    """Make `task=NAME` (a file conf/task/NAME.yaml holding `name: NAME`) train and judge runs as `task` says."""
    TASKS.register(name, task, replace)


register_task("classification", CLASSIFICATION)
register_task("regression", REGRESSION)
register_task("reconstruction", RECONSTRUCTION)

TARGET_KINDS = {"labels": "integer class labels", "values": "float targets"}


@dataclass(frozen=True)
class TaskSettings:
    """The `task` node: the name of a registered task (null: the dataset's natural one)."""

    name: str

    def validate(self, where: str) -> None:
        """The name must be registered."""
        TASKS.entry(self.name, f"{where}.name")


def resolve_task(settings: TaskSettings | Mapping[str, Any] | None, spec: DataSpec) -> tuple[str, Task]:
    """The task a run trains: the `task` node's (checked settings, or a mapping read as
    them), or the dataset's natural task.

    The data's targets must be what the task compares with: float targets for
    classification, or integer labels for regression, are a one-line error.
    """
    name = read_node("task", settings, TaskSettings).name if settings is not None else spec.task
    task = TASKS.entry(name)
    if task.targets is not None and task.targets != spec.targets:
        fitting = [n for n, t in TASKS.items() if t.targets in (spec.targets, None)]
        raise RegrunError(f"task {name} needs {TARGET_KINDS[task.targets]}, but dataset {spec.name} has "
                          f"{TARGET_KINDS[spec.targets]}; allowed: task={', task='.join(fitting)}")
    return name, task


def check_output(name: str, task: Task, spec: DataSpec, model: str, shape: Shape) -> None:
    """Refuse a model whose output (for a batch of shape[0] samples) the task cannot compare."""
    batch, *sample = shape
    allowed = task.output_shapes(spec)
    if tuple(sample) not in allowed:
        what = f"{spec.num_classes} classes" if task.targets == "labels" else f"{task.num_outputs(spec)} outputs"
        expected = " or ".join(str((batch, *s)) for s in dict.fromkeys(allowed))
        raise RegrunError(f"model {model!r}: output shape {tuple(shape)} does not fit task {name} with {what} "
                          f"(dataset {spec.name}); expected {expected}")


def task_summary(name: str, task: Task) -> dict:
    """summary.json's `task`: what readers need without importing torch (the headline column)."""
    return {"name": name, "figures": dict(task.figures), "headline": split_figure("test", task.headline),
            "higher_is_better": task.higher_is_better}
