"""The pruning evaluation of a trained model (regrun/measure/pruning.py), as a run's config
asks for it: the `prune` node says which weight tensors (selected as a target's are), at
which sparsity levels, and whether each layer is also pruned alone. With `at_end` a run
does it once it completed; `regrun prune RUN_DIR` does it for any completed run.

With `finetune_epochs` the model pruned globally at each level is then trained that many
epochs more, as the prune-then-fine-tune recipes do, the pruned weights held at zero (set
to zero again after every optimizer step), and its test figures join the level's row as
`finetuned_test_<figure>`: what the pruned network recovers to.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import torch
from torch import Tensor, nn

from regrun.components.datasets import Data
from regrun.components.tasks import Task
from regrun.errors import RegrunError
from regrun.layout import COMPLETED, FINETUNE_EPOCHS, LEVEL, PRUNE_GLOBAL, PRUNE_SPARSITY, SCOPE, finetuned
from regrun.measure.evaluation import split_row, task_figures
from regrun.measure.pruning import global_masks, prune_rows, zero_fraction
from regrun.schema import FLATTEN, AtLeast, Range
from regrun.training.loop import Member, Outcome, TrainState, fit
from regrun.training.param_groups import OptimizerSettings, build_grouped_optimizer
from regrun.training.selection import Selection, match_modules, site_params
from regrun.training.settings import TrainerSettings
from regrun.training.step import SoloStep

Level = Annotated[float, Range(0, 1, lo_open=True)]
# What is pruned when the node selects nothing itself: the weights of these layers.
PRUNABLE_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneSettings:
    """The `prune` node: whether a completed run evaluates its pruned model (`at_end`), the
    fractions of the chosen weights to zero, whether each layer alone too, how many epochs
    to fine-tune each globally pruned model (0: none), and which weights (`layers`, `types`,
    `exclude` as a target's; none given: every Linear and Conv layer)."""

    at_end: bool = False
    levels: list[Level] = field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9, 0.95])
    per_layer: bool = True
    finetune_epochs: Annotated[int, AtLeast(0), "0: no fine-tuning"] = 0
    selection: Selection = field(default_factory=Selection, metadata=FLATTEN)

    def validate(self, where: str) -> None:
        """At least one level, each once."""
        if not self.levels or len(set(self.levels)) < len(self.levels):
            raise RegrunError(f"{where}.levels must list distinct fractions in (0, 1], got {self.levels}")


@dataclass(frozen=True)
class Training:
    """How the run trained, as fine-tuning repeats it: its trainer and optimizer settings
    (a fresh optimizer, the task's loss alone) and its seed (the batches' order)."""

    trainer: TrainerSettings
    optimizer: OptimizerSettings
    seed: int


def pruned_tensors(model: nn.Module, settings: PruneSettings) -> dict[str, Tensor]:
    """The weight tensors the settings choose, by parameter name (a selection that matches
    nothing is a one-line error)."""
    selection = settings.selection
    if not selection.layers and not selection.types:
        selection = Selection(types=list(PRUNABLE_TYPES), exclude=selection.exclude)
    modules = match_modules(model, "prune", selection)
    params = dict(model.named_parameters())
    return {name: params[name] for name in site_params(model, "prune", "weights", modules)}


def evaluate_pruning(model: nn.Module, task: Task, data: Data, settings: PruneSettings, training: Training,
                     stop: Callable[[], bool] = lambda: False) -> list[dict[str, Any]]:
    """prune.json's rows for the model on the test set: as it is, then pruned at each level
    globally and, with `per_layer`, one layer at a time; with `finetune_epochs`, each global
    row with the figures of its model fine-tuned (`stop` polled between its steps). The
    model is left as it was."""
    tensors = pruned_tensors(model, settings)
    batch = training.trainer.eval_batch_size
    rows = prune_rows(tensors, lambda: task_figures(model, task, data.test, batch), sorted(settings.levels),
                      settings.per_layer)
    if settings.finetune_epochs:
        add_finetuned(rows, model, tensors, task, data, replace(training.trainer, epochs=settings.finetune_epochs),
                      training, stop)
    return rows


def add_finetuned(rows: Sequence[dict[str, Any]], model: nn.Module, tensors: Mapping[str, Tensor], task: Task,
                  data: Data, trainer: TrainerSettings, training: Training, stop: Callable[[], bool]) -> None:
    """To each global row of a level, the test figures and the zero fraction of its pruned model
    fine-tuned `trainer.epochs` epochs; the model is put back as it was (all its state, which
    fine-tuning changes beyond the pruned tensors). A fine-tuning that does not complete (a
    stop request, a loss gone NaN) ends the fine-tuning: the rows after it have none."""
    saved = {key: value.clone() for key, value in model.state_dict().items()}
    try:
        for row in rows:
            if row[SCOPE] != PRUNE_GLOBAL or row[LEVEL] == 0:
                continue
            model.load_state_dict(saved)
            figures = finetune_pruned(model, global_masks(tensors, row[LEVEL]), tensors, task, data, trainer,
                                      training, stop)
            if figures is None:
                break
            row |= {FINETUNE_EPOCHS: trainer.epochs, finetuned(PRUNE_SPARSITY): zero_fraction(list(tensors.values())),
                    **{finetuned(key): value for key, value in split_row("test", figures).items()}}
    finally:
        model.load_state_dict(saved)


def finetune_pruned(model: nn.Module, masks: Mapping[str, Tensor], tensors: Mapping[str, Tensor], task: Task,
                    data: Data, trainer: TrainerSettings, training: Training,
                    stop: Callable[[], bool] = lambda: False) -> dict[str, float] | None:
    """Zero the masked entries of `tensors` (the model's own), train the model `trainer.epochs`
    epochs on the task's loss with a fresh optimizer of the run's settings, the masked entries
    set to zero again after every optimizer step, and return its test figures; None (and a
    warning) when it did not complete. The model is left fine-tuned."""
    optimizer, _ = build_grouped_optimizer(model, training.optimizer)

    def hold(*_: Any) -> None:
        with torch.no_grad():
            for name, mask in masks.items():
                tensors[name].masked_fill_(mask, 0)

    hold()
    ended: list[Outcome] = []
    member = Member(model, optimizer, [], TrainState(torch.Generator().manual_seed(training.seed)),
                    on_epoch=lambda row: None, save=lambda: None, done=ended.append)
    # Evaluated once, after the last epoch; never checkpointed, never a steps.csv row.
    settings = replace(trainer, eval_every=trainer.epochs, checkpoint_every=0, log_steps=0)
    handle = optimizer.register_step_post_hook(hold)
    try:
        fit([member], SoloStep(model, optimizer, []), task, data, settings, [], _Silent(), stop)
    finally:
        handle.remove()
    outcome = ended[0]
    if outcome.status != COMPLETED or outcome.evaluation is None:
        log.warning("fine-tuning of the pruned model ended %s (%s): no fine-tuned figures from here on",
                    outcome.status, outcome.message)
        return None
    return outcome.evaluation.figures


class _Silent:
    """A reporter that shows nothing: fine-tuning runs inside a run's or `regrun prune`'s output."""

    def start_epoch(self, epoch: int, steps: int) -> None:
        """Nothing to show."""

    def step(self, done: int, figures: Sequence[Mapping[str, float]]) -> None:
        """Nothing to show."""

    def end_epoch(self, label: str, row: Mapping[str, Any]) -> None:
        """Nothing to show."""
