"""The pruning evaluation of a trained model (regrun/measure/pruning.py), as a run's config
asks for it: the `prune` node says which weight tensors (selected as a target's are), at
which sparsity levels, and whether each layer is also pruned alone. With `at_end` a run
does it once it completed; `regrun prune RUN_DIR` does it for any completed run.
"""

from dataclasses import dataclass, field
from typing import Annotated, Any

from torch import Tensor, nn

from regrun.components.datasets import Split
from regrun.components.tasks import Task
from regrun.errors import RegrunError
from regrun.measure.evaluation import task_figures
from regrun.measure.pruning import prune_rows
from regrun.schema import FLATTEN, Range
from regrun.training.selection import Selection, match_modules, site_params

Level = Annotated[float, Range(0, 1, lo_open=True)]
# What is pruned when the node selects nothing itself: the weights of these layers.
PRUNABLE_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d")


@dataclass(frozen=True)
class PruneSettings:
    """The `prune` node: whether a completed run evaluates its pruned model (`at_end`), the
    fractions of the chosen weights to zero, whether each layer alone too, and which weights
    (`layers`, `types`, `exclude` as a target's; none given: every Linear and Conv layer)."""

    at_end: bool = False
    levels: list[Level] = field(default_factory=lambda: [0.5, 0.7, 0.8, 0.9, 0.95])
    per_layer: bool = True
    selection: Selection = field(default_factory=Selection, metadata=FLATTEN)

    def validate(self, where: str) -> None:
        """At least one level, each once."""
        if not self.levels or len(set(self.levels)) < len(self.levels):
            raise RegrunError(f"{where}.levels must list distinct fractions in (0, 1], got {self.levels}")


def pruned_tensors(model: nn.Module, settings: PruneSettings) -> dict[str, Tensor]:
    """The weight tensors the settings choose, by parameter name (a selection that matches
    nothing is a one-line error)."""
    selection = settings.selection
    if not selection.layers and not selection.types:
        selection = Selection(types=list(PRUNABLE_TYPES), exclude=selection.exclude)
    modules = match_modules(model, "prune", selection)
    params = dict(model.named_parameters())
    return {name: params[name] for name in site_params(model, "prune", "weights", modules)}


def evaluate_pruning(model: nn.Module, task: Task, split: Split, batch_size: int,
                     settings: PruneSettings) -> list[dict[str, Any]]:
    """prune.json's rows for the model on `split` (the test set): as it is, then pruned at
    each level globally and, with `per_layer`, one layer at a time. The model is left as it was."""
    return prune_rows(pruned_tensors(model, settings), lambda: task_figures(model, task, split, batch_size),
                      sorted(settings.levels), settings.per_layer)
