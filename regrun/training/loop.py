"""The training loop: task loss plus the targets' penalties, on tensors held on the device.

The task (regrun/components/tasks.py) says what the output is compared with and how: the
loop and the evaluation assume no accuracy and no labels.

One step: forward (hooks capture the targeted outputs), task loss, each target's raw
penalty and λ·raw, backward on task + Σ λ·raw, optimizer step. The step returns its loss
terms as one detached tensor that is summed on the device (in float64), so the loop
synchronises with the device only when it reports (every `log_every` steps and at the
end of an epoch).
"""

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from regrun.measure.capture import ActivationCapture
from regrun.measure.evaluation import Evaluation, evaluate, headline, split_row, task_figures
from regrun.training.memory import reuse_freed_memory
from regrun.components.datasets import Data, Split, batches
from regrun.layout import lambda_column, split_figure
from regrun.components.tasks import Task
from regrun.training.settings import TrainerSettings
from regrun.training.targets import Target


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Optimisation steps in one pass: the last batch may be smaller."""
    return -(-samples // batch_size)


def loss_terms(targets: Sequence[Target]) -> list[str]:
    """Names of the figures one step returns, in order."""
    names = ["train_task_loss"]
    names += [f"penalty.{t.name}.raw" for t in targets]
    names += [f"penalty.{t.name}.weighted" for t in targets]
    return names


def train_step(model: nn.Module, task: Task, x: Tensor, y: Tensor, targets: Sequence[Target],
               params: Mapping[str, Tensor], capture: ActivationCapture, optimizer: torch.optim.Optimizer,
               lams: Sequence[float] | None = None) -> Tensor:
    """One optimisation step with the targets' λ in effect (`lams`; default: each target's
    full λ); returns the detached loss terms in `loss_terms` order."""
    lams = [t.lam for t in targets] if lams is None else lams
    output = model(x)
    total, terms = step_loss(task, output, task.reference(x, y), targets, params, capture.take(), lams)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    if any(t.proximal for t in targets):
        lr_of = learning_rates(optimizer, params)
        for t, lam in zip(targets, lams):
            if t.proximal:
                t.shrink_(params, lr_of, lam, optimizer)
    return terms


def step_loss(task: Task, output: Tensor, reference: Tensor, targets: Sequence[Target], params: Mapping[str, Tensor],
              activations: Mapping[str, list[Tensor]], lams: Sequence[float | Tensor]) -> tuple[Tensor, Tensor]:
    """The loss to backpropagate (the task's loss + Σ λ·raw) and the detached loss terms in
    `loss_terms` order; `activations` is what the capture took for this step.

    A pure function of the forward's outputs and each target's λ in effect, so that it also
    runs inside `vmap` for a fused group, where `lams` holds the member's own λ.
    """
    loss = task.loss(output, reference)
    raw = [_raw(t, params, activations) for t in targets]
    weighted = [lam * r for lam, r in zip(lams, raw)]
    # A proximal target's penalty is applied by shrinking after the step, not by its gradient.
    total = sum((w for t, w in zip(targets, weighted) if not t.proximal), loss)
    with torch.no_grad():  # reporting only: no autograd node for the stack
        return total, torch.stack([loss, *raw, *weighted])


def _raw(target: Target, params: Mapping[str, Tensor], activations: Mapping[str, list[Tensor]]) -> Tensor:
    if target.proximal:  # reported only: no graph to build
        with torch.no_grad():
            return target.raw(params, activations)
    return target.raw(params, activations)


def learning_rates(optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor]) -> dict[str, float]:
    """The current learning rate of each named parameter (from its optimizer param group)."""
    lr_by_id = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    return {name: lr_by_id[id(p)] for name, p in params.items()}


class Reporter(Protocol):
    """What the loop tells the outside: progress while it trains, a row per epoch."""

    def start_epoch(self, epoch: int, steps: int) -> None:
        """An epoch of `steps` optimisation steps begins."""

    def step(self, done: int, figures: Mapping[str, float]) -> None:
        """`done` steps of the epoch are done; `figures` are the epoch's means so far."""

    def end_epoch(self, row: Mapping[str, Any]) -> None:
        """The epoch's metrics row is complete."""


@dataclass
class EpochProgress:
    """How far an epoch got: batches done, the running sums of the loss terms, and why it
    ended early, if it did (a stop request, or the first non-finite loss term)."""

    batches: int
    sums: Tensor
    stopped: bool = False
    non_finite: tuple[int, str, float] | None = None  # (batch, term, value) of the first NaN/Inf

    def means(self, targets: Sequence[Target]) -> dict[str, float]:
        """The mean of each loss term over the epoch's batches, with the totals."""
        return with_totals(dict(zip(loss_terms(targets), (self.sums / self.batches).tolist())), targets)


def train_epoch(model: nn.Module, task: Task, targets: Sequence[Target], optimizer: torch.optim.Optimizer,
                capture: ActivationCapture, split: Split, batch_size: int, shuffle: torch.Generator,
                log_every: int, reporter: Reporter, done: EpochProgress | None = None,
                stop: Callable[[], bool] = lambda: False, first_step: int = 1,
                lambdas: Callable[[int], Sequence[float]] | None = None) -> EpochProgress:
    """One shuffled pass over `split`, or the rest of one that `done` describes.

    `first_step` is the global number of the epoch's first step and `lambdas(step)` the
    targets' λ at a step (their schedules); by default every λ is constant.

    Stops early, at a step boundary, when `stop()` turns true or a loss term is NaN/Inf.
    Non-finite terms are looked for only when the loop syncs with the device (every
    `log_every` steps and at the end), in the steps since the last sync, so the check
    costs nothing while training is healthy.
    """
    params = dict(model.named_parameters())
    names = loss_terms(targets)
    model.train()
    progress = done or EpochProgress(0, torch.zeros(len(names), dtype=torch.float64, device=split.y.device))
    recent: list[Tensor] = []  # the steps since the last sync, to name the first bad one
    for x, y in batches(split, batch_size, shuffle, skip=progress.batches):
        lams = lambdas(first_step + progress.batches) if lambdas else None
        terms = train_step(model, task, x, y, targets, params, capture, optimizer, lams)
        progress.sums += terms
        progress.batches += 1
        recent.append(terms)
        progress.stopped = stop()
        if progress.batches % log_every == 0 or progress.stopped:
            if _sync(progress, recent, names, targets, reporter):
                return progress
        if progress.stopped:
            return progress
    _sync(progress, recent, names, targets, reporter)
    return progress


def _sync(progress: EpochProgress, recent: list[Tensor], names: list[str], targets: Sequence[Target],
          reporter: Reporter) -> bool:
    """Report the running means; True (and the bad term noted) when a term went non-finite."""
    means = progress.means(targets)
    if not all(math.isfinite(v) for v in means.values()):
        progress.non_finite = first_non_finite(recent, progress.batches, names)
        return True
    recent.clear()
    reporter.step(progress.batches, means)
    return False


def first_non_finite(recent: Sequence[Tensor], batches: int, names: Sequence[str]) -> tuple[int, str, float] | None:
    """(batch, term, value) of the first NaN/Inf among the loss terms of the last steps,
    `recent`, the last of which was batch `batches` of the epoch."""
    for i, terms in enumerate(torch.stack(list(recent)).tolist()):
        bad = [(name, v) for name, v in zip(names, terms) if not math.isfinite(v)]
        if bad:
            return (batches - len(recent) + i + 1, *bad[0])
    return None


def with_totals(means: dict[str, float], targets: Sequence[Target]) -> dict[str, float]:
    """Add `train_penalty_total` and `train_total_loss` to the means of the loss terms."""
    penalty = sum(means[f"penalty.{t.name}.weighted"] for t in targets)
    return means | {"train_penalty_total": penalty, "train_total_loss": means["train_task_loss"] + penalty}


@dataclass
class TrainState:
    """Where training stands, besides model and optimizer: what a checkpoint must restore to
    continue exactly. `epoch` epochs are complete; `partial` is the progress of the next one,
    whose permutation is replayed from the shuffle generator's state `epoch_start`."""

    shuffle: torch.Generator
    epoch: int = 0
    epoch_start: Tensor | None = None
    partial: EpochProgress | None = None


@dataclass
class Outcome:
    """How `fit` ended: `completed`, `interrupted` or `diverged`, with a one-line reason."""

    status: str
    message: str = ""
    evaluation: Evaluation | None = None


def fit(model: nn.Module, task: Task, targets: Sequence[Target], optimizer: torch.optim.Optimizer, data: Data,
        settings: TrainerSettings, thresholds: Sequence[float], state: TrainState, reporter: Reporter,
        on_epoch: Callable[[dict], None], save: Callable[[], None],
        stop: Callable[[], bool] = lambda: False) -> Outcome:
    """Train from `state` to `settings.epochs` epochs, calling `save` to checkpoint.

    A checkpoint is saved every `checkpoint_every` epochs, after the last one, and when
    `stop()` ends training early; never after a divergence, so the last checkpoint holds
    finite weights.
    """
    reuse_freed_memory()
    captured = sorted({m for t in targets if t.on_activations for m in t.modules})
    per_epoch = steps_per_epoch(len(data.train), settings.batch_size)
    evaluation: Evaluation | None = None

    def lambdas(step: int) -> list[float]:
        return lambdas_at(targets, step, per_epoch, settings.epochs)

    with ActivationCapture(model, captured) as capture:
        while state.epoch < settings.epochs:
            epoch = state.epoch + 1
            started = time.perf_counter()
            if state.partial is None:
                state.epoch_start = state.shuffle.get_state()
            else:  # resumed mid-epoch: draw the epoch's permutation again
                state.shuffle.set_state(state.epoch_start)
            reporter.start_epoch(epoch, per_epoch)
            progress = train_epoch(model, task, targets, optimizer, capture, data.train, settings.batch_size,
                                   state.shuffle, settings.log_every, reporter, state.partial, stop,
                                   state.epoch * per_epoch + 1, lambdas)
            if outcome := early_end(state, progress, per_epoch, save):
                return outcome
            evaluation = end_epoch(model, task, targets, data, settings, thresholds, state, progress, started,
                                   reporter, on_epoch) or evaluation
            if checkpoint_due(settings, state.epoch, stop):
                save()
            if stop() and state.epoch < settings.epochs:
                return Outcome("interrupted", f"stopped after epoch {state.epoch} (step {state.epoch * per_epoch}); "
                                              "checkpoint saved")
    assert evaluation is not None  # the last epoch always evaluates
    return Outcome("completed", evaluation=evaluation)


def lambdas_at(targets: Sequence[Target], step: int, per_epoch: int, epochs: int) -> list[float]:
    """Each target's λ in effect at global step `step` (1-based), under its schedule."""
    return [t.lam_at(step, per_epoch, epochs) for t in targets]


def early_end(state: TrainState, progress: EpochProgress, per_epoch: int, save: Callable[[], None]) -> Outcome | None:
    """How an epoch that ended early ends the run: `diverged` at its first non-finite loss
    term (no checkpoint: the last one holds finite weights), or `interrupted` at a step
    boundary (checkpoint saved, to continue from that step). None for a complete epoch."""
    epoch = state.epoch + 1
    if progress.non_finite:
        batch, term, value = progress.non_finite
        return Outcome("diverged", f"{term} is {value} at step {state.epoch * per_epoch + batch} "
                                   f"(epoch {epoch}, batch {batch}/{per_epoch})")
    if progress.batches < per_epoch:  # stopped at a step boundary
        state.partial = progress
        save()
        return Outcome("interrupted", f"stopped at step {state.epoch * per_epoch + progress.batches} (epoch {epoch}, "
                                      f"batch {progress.batches}/{per_epoch}); checkpoint saved")
    return None


def end_epoch(model: nn.Module, task: Task, targets: Sequence[Target], data: Data, settings: TrainerSettings,
              thresholds: Sequence[float], state: TrainState, progress: EpochProgress, started: float,
              reporter: Reporter, on_epoch: Callable[[dict], None]) -> Evaluation | None:
    """Complete epoch `state.epoch + 1`: its metrics row (evaluated on the test set, and
    the validation set if any, when due), reported and recorded; returns the evaluation,
    if there was one."""
    epoch = state.epoch + 1
    per_epoch = steps_per_epoch(len(data.train), settings.batch_size)
    step = epoch * per_epoch
    row = {"epoch": epoch, "step": step, **progress.means(targets),
           **{lambda_column(t.name): lam for t, lam in zip(targets, lambdas_at(targets, step, per_epoch, settings.epochs))}}
    evaluation = None
    if epoch % settings.eval_every == 0 or epoch == settings.epochs:
        evaluation = evaluate(model, task, data.test, settings.eval_batch_size, thresholds)
        if data.val is not None:  # figures only: the statistics are the test set's
            row |= split_row("val", task_figures(model, task, data.val, settings.eval_batch_size))
        row |= split_row("test", evaluation.figures) | headline(evaluation, targets, thresholds)
    row["epoch_time_s"] = time.perf_counter() - started
    state.epoch, state.partial = epoch, None
    reporter.end_epoch(row)
    on_epoch(row)
    return evaluation


def checkpoint_due(settings: TrainerSettings, epoch: int, stop: Callable[[], bool]) -> bool:
    """A checkpoint after this epoch: every `checkpoint_every` epochs, after the last, and on a stop."""
    every = settings.checkpoint_every
    return bool(every and epoch % every == 0) or epoch == settings.epochs or stop()
