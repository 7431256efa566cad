"""The training loop: epochs, steps, syncs, reports, checkpoints, early ends and stop
requests, written once for a run alone and for a fused group of runs.

The loop trains *members* (a run alone is a group of one) through a `Stepper`: `SoloStep`
(regrun/training/step.py) steps one run's own model, `FusedModel` (regrun/training/fused.py)
steps the stacked copies of a group as one vectorized model. Each member keeps its own
model, optimizer, targets and training state; the stepper copies a member's slice back
into them (`export`) before its epoch ends, so its evaluation, metrics row, checkpoint
(always in the format of a run alone) and summary are the same code whether it trained
alone or fused.

The loop synchronises with the device only when it reports (every `log_every` steps, every
`log_steps` steps when steps.csv is written, and at the end of an epoch); NaN/Inf loss
terms are looked for then, in the steps since the last sync, so the check costs nothing
while training is healthy. A member whose loss went non-finite ends `diverged` and the
others go on.
"""

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from regrun.components.datasets import Data, Split
from regrun.components.tasks import Task
from regrun.errors import RegrunError, contained, one_line
from regrun.layout import COMPLETED, DIVERGED, EPOCH, EPOCH_TIME, INTERRUPTED, STEP, lambda_column
from regrun.measure.capture import ActivationCapture, overwrite_note, overwritten_in_place
from regrun.measure.evaluation import Evaluation, EvaluationStopped, evaluate, headline, split_row, task_figures
from regrun.measure.firing import DEAD_WINDOW, note_fired, window_dead
from regrun.training.memory import reuse_freed_memory
from regrun.training.settings import TrainerSettings
from regrun.training.step import UserCodeFailed, loss_terms, with_totals
from regrun.training.targets import Target

log = logging.getLogger(__name__)


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Optimisation steps in one pass: the last batch may be smaller."""
    return -(-samples // batch_size)


class Reporter(Protocol):
    """What the loop tells the outside: progress while it trains, a row per member's epoch."""

    def start_epoch(self, epoch: int, steps: int) -> None:
        """An epoch of `steps` optimisation steps begins."""

    def step(self, done: int, figures: Sequence[Mapping[str, float]]) -> None:
        """`done` steps of the epoch are done; `figures`: each live member's means so far."""

    def end_epoch(self, label: str, row: Mapping[str, Any]) -> None:
        """The metrics row of the epoch of the member named `label` is complete."""


@dataclass
class EpochProgress:
    """How far an epoch got: batches done and the running sums of the loss terms."""

    batches: int
    sums: Tensor

    def means(self, targets: Sequence[Target]) -> dict[str, float]:
        """The mean of each loss term over the epoch's batches, with the totals."""
        return with_totals(dict(zip(loss_terms(targets), (self.sums / self.batches).tolist())), targets)


@dataclass
class TrainState:
    """Where training stands, besides model and optimizer: what a checkpoint must restore to
    continue exactly. `epoch` epochs are complete; `partial` is the progress of the next one,
    whose permutation is replayed from the shuffle generator's state `epoch_start`."""

    shuffle: torch.Generator
    epoch: int = 0
    epoch_start: Tensor | None = None
    partial: EpochProgress | None = None
    # per captured module, the global step each unit last fired in (0: never), (units,)
    last_fired: dict[str, Tensor] = field(default_factory=dict)

    @property
    def position(self) -> tuple[int, int]:
        """(epochs done, batches done of the next one): members continue together only from one position."""
        return self.epoch, self.partial.batches if self.partial else 0


@dataclass
class Outcome:
    """How a member's training ended: `completed`, `interrupted` or `diverged`, with a one-line reason."""

    status: str
    message: str = ""
    evaluation: Evaluation | None = None


@dataclass
class Member:
    """One run the loop trains, and where its results go."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    targets: list[Target]
    state: TrainState
    on_epoch: Callable[[dict], None]  # a completed epoch's metrics row
    save: Callable[[], None]  # write its checkpoint from its model, optimizer and state
    done: Callable[[Outcome], None]  # how its training ended; called exactly once
    on_step: Callable[[dict], None] | None = None  # a step's row for steps.csv (trainer.log_steps)
    on_evaluation: Callable[[int, Evaluation], None] | None = None  # an epoch's evaluation, at its global step
    label: str = ""  # names it in the log lines of a group
    context: Callable[[], AbstractContextManager] = nullcontext  # around its own work (its log file)
    evaluation: Evaluation | None = field(default=None, repr=False)


class Stepper(Protocol):
    """What steps the members: their models' forward, loss, backward and optimizer step."""

    module: nn.Module  # whose forward hooks capture the targeted outputs
    fired: dict[str, Tensor]  # after a step: which units of each captured module fired, (members, units)

    def step(self, task: Task, x: Tensor, y: Tensor, capture: ActivationCapture,
             lams: Sequence[Sequence[float]] | None) -> Tensor:
        """One step of every live member m on its batch x[m], y[m] with its targets' λ `lams[m]`
        (None: each target's full λ); returns the detached loss terms, (members, terms)."""

    def keep(self, rows: Sequence[int]) -> None:
        """Go on with the members at `rows` only."""

    def export(self, row: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Copy member `row`'s parameters, buffers and optimizer state into its own model and optimizer."""


def fit(members: Sequence[Member], stepper: Stepper, task: Task, data: Data, settings: TrainerSettings,
        thresholds: Sequence[float], reporter: Reporter, stop: Callable[[], bool] = lambda: False,
        dead_window: int = DEAD_WINDOW) -> None:
    """Train the members from where their states stand to `settings.epochs` epochs.

    `dead_window`: a unit of a targeted activation module that fired on no training sample
    in that many steps counts as dead in the epoch rows' `sparsity.<target>.train_dead_frac`.

    Every member ends through its `done` exactly once: `completed`; `diverged` at the sync
    that saw its first NaN/Inf (no checkpoint: the last one holds finite weights); or
    `interrupted` when `stop()` turned true, checkpointed at that step boundary. Checkpoints
    are also saved every `checkpoint_every` epochs and after the last one.
    """
    reuse_freed_memory()
    positions = {m.state.position for m in members}
    if len(positions) > 1:
        raise ValueError(f"members continue together only from one position; these stand at {sorted(positions)}")
    targets = members[0].targets  # their structure, shared by all members; each one's λ is its own
    captured = sorted({m for t in targets if t.on_activations for m in t.modules})
    live = list(members)
    copied = _overwritten(members, data.train, settings, captured)
    with ActivationCapture(stepper.module, captured, copied) as capture:
        while live and live[0].state.epoch < settings.epochs:
            live = _epoch(live, stepper, task, data, settings, thresholds, reporter, capture, stop, dead_window)
            epoch = live[0].state.epoch if live else 0
            if live and stop() and epoch < settings.epochs:
                per_epoch = steps_per_epoch(len(data.train), settings.batch_size)
                _end(live, Outcome(INTERRUPTED, f"stopped after epoch {epoch} (step {epoch * per_epoch}); "
                                                "checkpoint saved"))
                return
    for member in live:
        _end([member], Outcome(COMPLETED, evaluation=member.evaluation))


def _overwritten(members: Sequence[Member], split: Split, settings: TrainerSettings,
                 captured: Sequence[str]) -> list[str]:
    """The captured modules whose output an in-place operation later in the forward
    overwrites, from one probing forward of the first training batch on the first member's
    own model (a fused group's members share its code); said in every member's log."""
    if not captured:
        return []
    member = members[0]
    at = f" before step {member.state.epoch * steps_per_epoch(len(split), settings.batch_size) + 1}"
    with _guarded(f"the model's forward{at}", "the model's forward raised", at):  # as its step 1 would
        found = overwritten_in_place(member.model, split.x[:settings.batch_size], captured)
    if found:
        with ExitStack() as logs:
            for m in members:
                logs.enter_context(m.context())
            log.info(overwrite_note(found))
    return list(found)


def _epoch(live: list[Member], stepper: Stepper, task: Task, data: Data, settings: TrainerSettings,
           thresholds: Sequence[float], reporter: Reporter, capture: ActivationCapture,
           stop: Callable[[], bool], dead_window: int) -> list[Member]:
    """Train the live members through one epoch (or the rest of one they stopped in) and end
    it for each of them; returns the members that go on to the next epoch."""
    started = time.perf_counter()
    per_epoch = steps_per_epoch(len(data.train), settings.batch_size)
    live, batches, sums = train_epoch(live, stepper, task, data.train, settings, reporter, capture, stop)
    train_s = time.perf_counter() - started
    going_on = []
    for row, member in enumerate(live):
        stepper.export(row, member.model, member.optimizer)
        progress = EpochProgress(batches, sums[row].clone())
        with member.context():
            if batches < per_epoch:  # stopped at a step boundary
                step = member.state.epoch * per_epoch + batches
                member.done(_interrupt(member, progress, f"at {_at(step, per_epoch)}"))
                continue
            # The member's time: the group's training plus its own evaluation.
            try:
                evaluation = end_epoch(member, task, data, settings, thresholds, progress,
                                       time.perf_counter() - train_s, reporter, dead_window, stop)
            except EvaluationStopped:  # the epoch's steps are all done: a resume evaluates it and goes on
                epoch = member.state.epoch + 1
                member.done(_interrupt(member, progress, f"during the evaluation of epoch {epoch} "
                                                         f"(after step {epoch * per_epoch})"))
                continue
            member.evaluation = evaluation or member.evaluation
            if checkpoint_due(settings, member.state.epoch, stop):
                member.save()
        going_on.append(member)
    return going_on


def train_epoch(live: list[Member], stepper: Stepper, task: Task, split: Split, settings: TrainerSettings,
                reporter: Reporter, capture: ActivationCapture,
                stop: Callable[[], bool] = lambda: False) -> tuple[list[Member], int, Tensor]:
    """The steps of one shuffled pass over `split` (or the rest of one the members stopped
    in), until its end or a stop request; returns the members that did not diverge, the
    batches done, and their sums of the loss terms, (members, terms)."""
    per_epoch = steps_per_epoch(len(split), settings.batch_size)
    state = live[0].state
    first_step = state.epoch * per_epoch + 1
    names = loss_terms(live[0].targets)
    device = split.y.device
    scheduled = not all(t.schedule.constant for t in live[0].targets)
    reporter.start_epoch(state.epoch + 1, per_epoch)
    orders = torch.stack([_permutation(m.state, len(split)) for m in live]).to(device)
    batches = state.partial.batches if state.partial else 0
    sums = torch.stack([m.state.partial.sums if m.state.partial else
                        torch.zeros(len(names), dtype=torch.float64, device=device) for m in live])
    recent: list[Tensor] = []  # the steps since the last sync, to name the first bad one
    last_fired = {name: torch.stack([m.state.last_fired[name] for m in live]) for name in state.last_fired}
    stepper.module.train()
    for start in range(batches * settings.batch_size, len(split), settings.batch_size):
        batch = split.take(orders[:, start:start + settings.batch_size])  # (members, B, ...)
        lams = [lambdas_at(m.targets, first_step + batches, per_epoch, settings.epochs) for m in live] \
            if scheduled else None
        terms = _step(stepper, task, batch.x, batch.y, capture, lams, first_step + batches, per_epoch)
        note_fired(last_fired, stepper.fired, first_step + batches)
        sums += terms
        batches += 1
        recent.append(terms)
        stopped = stop()
        logged = bool(settings.log_steps) and (first_step + batches - 1) % settings.log_steps == 0
        if batches % settings.log_every == 0 or stopped or batches == per_epoch or logged:
            if settings.log_steps:
                _log_steps(live, recent, first_step + batches - len(recent), names, per_epoch, settings)
            rows = _sync(live, stepper, sums, recent, batches, names, per_epoch, reporter)
            live, sums, orders = [live[i] for i in rows], sums[rows], orders[rows]
            last_fired = {name: fired[rows] for name, fired in last_fired.items()}
        if stopped or not live:
            break
    for i, member in enumerate(live):
        member.state.last_fired = {name: fired[i] for name, fired in last_fired.items()}
    return live, batches, sums


def _step(stepper: Stepper, task: Task, x: Tensor, y: Tensor, capture: ActivationCapture,
          lams: Sequence[Sequence[float]] | None, step: int, per_epoch: int) -> Tensor:
    """One step of the stepper; what goes wrong in it is one line naming the step and, for
    the model or a penalty plugged in, which of them raised (else a backward or an optimizer
    step failed, and torch says why)."""
    with _guarded(_in_training(step, per_epoch), "training failed", f" at {_at(step, per_epoch)}"):
        return stepper.step(task, x, y, capture, lams)


@contextmanager
def _guarded(where: str | Callable[[BaseException], str], failed: str, at: str = "") -> Iterator[None]:
    """Run code that calls the model (or a penalty plugged in): its exit is contained (`where`
    names it), its exception is one line, '{failed}{at}: why', or '{what raised} raised{at}: why'
    from inside a step; regrun's own errors and a stop request pass as they are."""
    try:
        with contained(where):
            yield
    except (RegrunError, EvaluationStopped):
        raise
    except UserCodeFailed as err:
        raise RegrunError(f"{err.where} raised{at}: {one_line(err.error)}") from err.error
    except Exception as err:
        raise RegrunError(f"{failed}{at}: {one_line(err)}") from err


def _at(step: int, per_epoch: int) -> str:
    """'step 12 (epoch 2, batch 2/10)'."""
    return f"step {step} (epoch {(step - 1) // per_epoch + 1}, batch {(step - 1) % per_epoch + 1}/{per_epoch})"


def _log_steps(live: list[Member], recent: list[Tensor], first: int, names: list[str], per_epoch: int,
               settings: TrainerSettings) -> None:
    """Give each member the rows of the steps since the last sync (the first of them is global
    step `first`) that fall every `log_steps` steps: that step's loss terms and λ."""
    every = settings.log_steps
    steps = [(first + i, terms) for i, terms in enumerate(recent) if (first + i) % every == 0]
    if not steps:
        return
    values = torch.stack([terms for _, terms in steps]).tolist()  # (steps, members, terms): one sync
    for m, member in enumerate(live):
        if member.on_step is None:
            continue
        for (step, _), terms in zip(steps, values):
            lams = lambdas_at(member.targets, step, per_epoch, settings.epochs)
            member.on_step({STEP: step, EPOCH: (step - 1) // per_epoch + 1,
                            **with_totals(dict(zip(names, terms[m])), member.targets),
                            **{lambda_column(t.name): lam for t, lam in zip(member.targets, lams)}})


def _in_training(step: int, per_epoch: int) -> Callable[[BaseException], str]:
    """Where a training step's exit came from: 'the model's forward at step 3 (epoch 1,
    batch 3/10)' when a module's forward called it, else 'the training step at ...' (a
    penalty, a hook, an optimizer)."""

    def where(err: BaseException) -> str:
        tb = err.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_name == "forward" and isinstance(frame.f_locals.get("self"), nn.Module):
                return f"the model's forward at {_at(step, per_epoch)}"
            tb = tb.tb_next
        return f"the training step at {_at(step, per_epoch)}"

    return where


def _end(members: Sequence[Member], outcome: Outcome) -> None:
    for member in members:
        with member.context():
            member.done(outcome)


def _permutation(state: TrainState, samples: int) -> Tensor:
    """The member's batch order for the epoch: drawn fresh from its shuffle generator, or, in
    an epoch it stopped in, drawn again from the generator's state at the epoch's start."""
    if state.partial is None:
        state.epoch_start = state.shuffle.get_state()
    else:
        assert state.epoch_start is not None, "a partial epoch keeps its start"
        state.shuffle.set_state(state.epoch_start)
    return torch.randperm(samples, generator=state.shuffle)


def _sync(live: list[Member], stepper: Stepper, sums: Tensor, recent: list[Tensor], batches: int,
          names: list[str], per_epoch: int, reporter: Reporter) -> list[int]:
    """Report the live members' running means; end every member whose loss terms went
    non-finite (`diverged`); returns the rows of those that go on."""
    figures = [with_totals(dict(zip(names, means)), live[0].targets) for means in (sums / batches).tolist()]
    rows = [i for i, f in enumerate(figures) if all(math.isfinite(v) for v in f.values())]
    for i in sorted(set(range(len(live))) - set(rows)):  # no checkpoint: the last one holds finite weights
        batch, term, value = first_non_finite([terms[i] for terms in recent], batches, names)
        step = live[i].state.epoch * per_epoch + batch
        _end([live[i]], Outcome(DIVERGED, f"{term} is {value} at {_at(step, per_epoch)}"))
    if rows and len(rows) < len(live):
        stepper.keep(rows)
    recent.clear()
    if rows:
        reporter.step(batches, [figures[i] for i in rows])
    return rows


def first_non_finite(recent: Sequence[Tensor], batches: int, names: Sequence[str]) -> tuple[int, str, float]:
    """(batch, term, value) of the first NaN/Inf among the loss terms of the last steps,
    `recent`, the last of which was batch `batches` of the epoch (their sum is not finite)."""
    rows = torch.stack(list(recent)).tolist()
    return next((batches - len(recent) + i + 1, name, v) for i, terms in enumerate(rows)
                for name, v in zip(names, terms) if not math.isfinite(v))


def lambdas_at(targets: Sequence[Target], step: int, per_epoch: int, epochs: int) -> list[float]:
    """Each target's λ in effect at global step `step` (1-based), under its schedule."""
    return [t.lam_at(step, per_epoch, epochs) for t in targets]


def _interrupt(member: Member, progress: EpochProgress, where: str) -> Outcome:
    """`interrupted` at a step boundary: the epoch's progress (`partial`) is checkpointed, to
    continue from that step."""
    member.state.partial = progress
    member.save()
    return Outcome(INTERRUPTED, f"stopped {where}; checkpoint saved")


def end_epoch(member: Member, task: Task, data: Data, settings: TrainerSettings, thresholds: Sequence[float],
              progress: EpochProgress, started: float, reporter: Reporter,
              dead_window: int = DEAD_WINDOW, stop: Callable[[], bool] = lambda: False) -> Evaluation | None:
    """Complete the member's epoch `state.epoch + 1`: its metrics row (evaluated on the test
    set, and the validation set if any, when due), reported and recorded; returns the
    evaluation, if there was one. A stop request during the evaluation (polled between its
    batches) raises `EvaluationStopped` with the epoch not ended."""
    state, targets, model = member.state, member.targets, member.model
    epoch = state.epoch + 1
    per_epoch = steps_per_epoch(len(data.train), settings.batch_size)
    step = epoch * per_epoch
    lams = lambdas_at(targets, step, per_epoch, settings.epochs)
    row = {EPOCH: epoch, STEP: step, **progress.means(targets),
           **{lambda_column(t.name): lam for t, lam in zip(targets, lams)},
           **window_dead(targets, state.last_fired, step, dead_window)}
    evaluation = None
    if epoch % settings.eval_every == 0 or epoch == settings.epochs:
        with _guarded(f"the model's forward in the evaluation after epoch {epoch}",
                      f"the evaluation after epoch {epoch} failed (the model's forward in eval mode)"):
            evaluation = evaluate(model, task, data.test, settings.eval_batch_size, thresholds, stop)
            if data.val is not None:  # figures only: the statistics are the test set's
                row |= split_row("val", task_figures(model, task, data.val, settings.eval_batch_size, stop))
        row |= split_row("test", evaluation.figures) | headline(evaluation, targets, thresholds)
    row[EPOCH_TIME] = time.perf_counter() - started
    state.epoch, state.partial = epoch, None
    reporter.end_epoch(member.label, row)
    member.on_epoch(row)
    if evaluation is not None and member.on_evaluation is not None:
        member.on_evaluation(step, evaluation)
    return evaluation


def checkpoint_due(settings: TrainerSettings, epoch: int, stop: Callable[[], bool]) -> bool:
    """A checkpoint after this epoch: every `checkpoint_every` epochs, after the last, and on a stop."""
    every = settings.checkpoint_every
    return bool(every and epoch % every == 0) or epoch == settings.epochs or stop()
