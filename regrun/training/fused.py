"""Fused training: runs that differ only in their targets' λ and their seed, trained as one
vectorized model (torch.func's model-ensembling recipe: stack_module_state, functional_call,
vmap).

Each member is built exactly as it is alone (its model initialised from its own seed, its
targets, its optimizer); the group stacks the members' parameters and buffers along a new
leading dimension and takes one step for all of them:

- each member's batch comes from its own shuffle generator, as alone; the batches of all
  members are gathered at once, (M, B, ...);
- inside the vmapped function run the forward (hooks on the template module see each
  member's outputs), the task loss and every target's penalty with the member's own λ: no
  batched tensor leaves it;
- the members' losses are summed and backpropagated, so each member's gradient is that of
  its own loss;
- one optimizer steps the stacked tensors. SGD, Adam and AdamW update each element from
  that element's gradient and state alone (weight decay included), so one optimizer over
  stacked tensors is M optimizers; proximal L1 soft-thresholds each member by its own lr·λ;
- BatchNorm's running statistics are buffers, stacked like the parameters: one per member.

The members' own modules and optimizers are kept: when a member's epoch ends, its slice is
copied back into them, so its evaluation, metrics row, checkpoint (in the format of a run
alone, which `regrun resume` continues alone) and summary are the solo code's. A member
whose loss goes NaN/Inf ends `diverged` and is dropped from the stacks; the others go on.
"""

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from regrun.components.datasets import Data
from regrun.components.tasks import Task
from regrun.measure.capture import ActivationCapture, output_shapes
from regrun.training.memory import reuse_freed_memory
from regrun.measure.sparsity import stat_modules
from regrun.training.targets import Target
from regrun.measure.evaluation import Evaluation
from regrun.training.settings import TrainerSettings
from regrun.training.loop import (EpochProgress, Outcome, Reporter, TrainState,
                                     checkpoint_due, early_end, end_epoch, first_non_finite, lambdas_at,
                                     learning_rates, loss_terms, step_loss, steps_per_epoch, with_totals)

# Optimizers whose update of an element depends on that element's gradient and state only:
# one of them over stacked tensors steps every member as its own would.
ELEMENTWISE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
STATE_SLOTS = {torch.optim.SGD: 1, torch.optim.Adam: 2, torch.optim.AdamW: 2}  # tensors of state per parameter


@dataclass
class Member:
    """One run of a fused group, built as it is alone, and where its results go."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    targets: list[Target]
    state: TrainState
    on_epoch: Callable[[dict], None]  # a completed epoch's metrics row
    save: Callable[[], None]  # write its checkpoint from its model, optimizer and state
    done: Callable[[Outcome], None]  # how its training ended
    label: str = ""  # names it in the group's log lines
    context: Callable[[], AbstractContextManager] = nullcontext  # around its own work (its log file)
    evaluation: Evaluation | None = field(default=None, repr=False)


def not_fusable(model: nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """Why a run cannot train in a fused group, or None when it can."""
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return "its model has dropout, whose random masks inside vmap would differ from the run's own"
    if type(optimizer) not in ELEMENTWISE_OPTIMIZERS:
        return (f"its optimizer {type(optimizer).__name__} is not one known to update each element on its own "
                f"({', '.join(o.__name__ for o in ELEMENTWISE_OPTIMIZERS)})")
    return None


def member_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, example: Tensor, batch_size: int) -> int:
    """About how much memory one member takes in a group: parameters, their gradients and
    optimizer state, buffers, and one batch's input and every layer's output, kept for the
    backward pass and its gradient."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    leaves = stat_modules(model)
    per_sample = example[0].numel() + sum(math.prod(s) for s in output_shapes(model, example, leaves).values())
    return params * (2 + STATE_SLOTS.get(type(optimizer), 2)) + buffers + 2 * batch_size * per_sample * example.element_size()


def available_bytes(device: torch.device) -> int | None:
    """Free memory of the device (CUDA), or the memory the OS can give (Linux); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def chunk_size(per_member: int, available: int | None, max_models: int | None) -> int:
    """Members per chunk: at most `max_models`, and as many as fit in half the free memory."""
    fits = max(1, available // 2 // max(per_member, 1)) if available else None
    limits = [n for n in (fits, max_models) if n]
    return min(limits) if limits else 1 << 30


class FusedModel:
    """M members' parameters, buffers and optimizer state, stacked, stepped as one."""

    def __init__(self, members: Sequence[Member]):
        template = members[0].model
        self.targets = members[0].targets  # structure shared by all; each member's λ in `lams`
        self.base = copy.deepcopy(template).to("meta")  # the forward's code; its tensors come from the stacks
        self.params, self.buffers = stack_module_state([m.model for m in members])
        dtype = next(iter(self.params.values())).dtype
        device = next(iter(self.params.values())).device
        # float64 like a Python float, for lr·λ; the loss uses the parameters' dtype, as λ·raw does alone
        self.lams64 = torch.tensor([[t.lam for t in m.targets] for m in members], dtype=torch.float64,
                                   device=device).reshape(len(members), len(self.targets))
        self.lams = self.lams64.to(dtype)
        name_of = {id(p): name for name, p in template.named_parameters()}
        self._names = [[name_of[id(p)] for p in group["params"]] for group in members[0].optimizer.param_groups]
        self.optimizer = self._optimizer(members[0].optimizer)

    def _optimizer(self, like: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """An optimizer of `like`'s class, implementation (fused kernel, foreach or loop) and
        param groups over the stacked parameters."""
        groups = [{**{k: v for k, v in group.items() if k != "params"}, "params": [self.params[n] for n in names]}
                  for group, names in zip(like.param_groups, self._names)]
        return type(like)(groups)  # each group carries `like`'s fused/foreach choice, which its step reads

    def step(self, task: Task, x: Tensor, y: Tensor, capture: ActivationCapture,
             lams64: Tensor | None = None) -> Tensor:
        """One step of every member on its batch x[m], y[m]; returns the loss terms, (M, terms).

        `lams64`: each member's λ of each target at this step, (M, targets), when a schedule
        moves them; by default their full λ.
        """
        targets = self.targets
        lams64 = self.lams64 if lams64 is None else lams64
        lams = self.lams if lams64 is self.lams64 else lams64.to(self.lams.dtype)

        def member_loss(params: dict, buffers: dict, x: Tensor, y: Tensor, lams: Tensor) -> tuple[Tensor, Tensor]:
            output = functional_call(self.base, (params, buffers), (x,))
            return step_loss(task, output, task.reference(x, y), targets, params, capture.take(), lams)

        losses, terms = vmap(member_loss, randomness="error")(self.params, self.buffers, x, y, lams)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # members share no tensor: each gets the gradient of its own loss
        self.optimizer.step()
        proximal = [(k, t) for k, t in enumerate(targets) if t.proximal]
        if proximal:
            lr_of = learning_rates(self.optimizer, self.params)
            for k, t in proximal:
                t.shrink_(self.params, lr_of, lams64[:, k], self.optimizer)
        return terms

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only the members at `rows` (the others' slices are dropped, with their state)."""
        index = torch.tensor(list(rows), device=self.lams.device)
        old_params, old_optimizer = self.params, self.optimizer
        self.params = {n: p.detach()[index].requires_grad_() for n, p in old_params.items()}
        self.buffers = {n: b[index] for n, b in self.buffers.items()}
        self.lams64, self.lams = self.lams64[index], self.lams[index]
        self.optimizer = self._optimizer(old_optimizer)
        for name, p in old_params.items():
            if p in old_optimizer.state:
                self.optimizer.state[self.params[name]] = {k: _rows(v, p, index) for k, v in old_optimizer.state[p].items()}

    def export(self, row: int, member: Member) -> None:
        """Copy member `row`'s parameters, buffers and optimizer state into its own model and optimizer."""
        with torch.no_grad():
            for name, p in member.model.named_parameters():
                p.copy_(self.params[name][row])
            for name, b in member.model.named_buffers():
                b.copy_(self.buffers[name][row])
        for name, p in member.model.named_parameters():
            stacked = self.params[name]
            if stacked in self.optimizer.state:
                member.optimizer.state[p] = {k: _rows(v, stacked, row) for k, v in self.optimizer.state[stacked].items()}


def _rows(value: object, param: Tensor, index: int | Tensor) -> object:
    """A slice of an optimizer state entry shaped like its stacked parameter; a copy of any other
    (Adam's step count is one scalar per tensor, the same for every member)."""
    if isinstance(value, Tensor):
        return value[index].clone() if value.shape == param.shape else value.clone()
    return copy.deepcopy(value)


class GroupProgress(Protocol):
    """What a fused group tells the outside while it trains."""

    def start_epoch(self, epoch: int, steps: int) -> None:
        """An epoch of `steps` optimisation steps begins."""

    def step(self, done: int, figures: Sequence[Mapping[str, float]]) -> None:
        """`done` steps are done; `figures`: each live member's means of the epoch so far."""


def fit_fused(members: Sequence[Member], task: Task, data: Data, settings: TrainerSettings,
              thresholds: Sequence[float], reporter: GroupProgress, member_reporter: Callable[[Member], Reporter],
              stop: Callable[[], bool] = lambda: False) -> None:
    """Train fresh members to `settings.epochs` epochs as one vectorized model.

    Each member ends through its `done` exactly once: `completed`, `diverged` (dropped from
    the group at the sync that saw its NaN/Inf, as a run alone stops), or `interrupted`
    (every live member checkpointed at the step boundary where `stop()` turned true).
    `reporter` shows the group's progress (`step` gets the live members' figures);
    `member_reporter(member)` reports a member's completed epochs.
    """
    reuse_freed_memory()
    group = FusedModel(members)
    live = list(members)
    names = loss_terms(group.targets)
    captured = sorted({m for t in group.targets if t.on_activations for m in t.modules})
    per_epoch = steps_per_epoch(len(data.train), settings.batch_size)
    device = data.train.y.device
    scheduled = not all(t.schedule.constant for t in group.targets)
    with ActivationCapture(group.base, captured) as capture:
        while live and live[0].state.epoch < settings.epochs:
            started = time.perf_counter()
            reporter.start_epoch(live[0].state.epoch + 1, per_epoch)
            orders = torch.stack([_permutation(m.state, len(data.train)) for m in live]).to(device)
            sums = torch.zeros(len(live), len(names), dtype=torch.float64, device=device)
            recent: list[Tensor] = []
            batches, stopped = 0, False
            first_step = live[0].state.epoch * per_epoch + 1
            for start in range(0, len(data.train), settings.batch_size):
                batch = data.train.take(orders[:, start:start + settings.batch_size])  # (M, B, ...)
                lams = _lambdas(live, first_step + batches, per_epoch, settings.epochs) if scheduled else None
                terms = group.step(task, batch.x, batch.y, capture, lams)
                sums += terms
                batches += 1
                recent.append(terms)
                stopped = stop()
                if batches % settings.log_every == 0 or stopped or batches == per_epoch:
                    rows = _sync(group, live, sums, recent, batches, names, per_epoch, reporter)
                    live, sums, orders = [live[i] for i in rows], sums[rows], orders[rows]
                    if not live:
                        return
                if stopped:
                    break
            train_s = time.perf_counter() - started
            for row, member in enumerate(live):
                group.export(row, member)
                progress = EpochProgress(batches, sums[row].clone())
                with member.context():
                    if outcome := early_end(member.state, progress, per_epoch, member.save):
                        member.done(outcome)
                        continue
                    evaluation = end_epoch(member.model, task, member.targets, data, settings, thresholds,
                                           member.state, progress, time.perf_counter() - train_s,
                                           member_reporter(member), member.on_epoch)
                    member.evaluation = evaluation or member.evaluation
                    if checkpoint_due(settings, member.state.epoch, stop):
                        member.save()
            if batches < per_epoch:
                return  # stopped mid-epoch: every member ended above
            epoch = live[0].state.epoch
            if stop() and epoch < settings.epochs:
                for member in live:
                    with member.context():
                        member.done(Outcome("interrupted", f"stopped after epoch {epoch} (step {epoch * per_epoch}); "
                                                           "checkpoint saved"))
                return
    for member in live:
        with member.context():
            member.done(Outcome("completed", evaluation=member.evaluation))


def _lambdas(live: Sequence[Member], step: int, per_epoch: int, epochs: int) -> Tensor:
    """Each live member's λ of each target at global step `step`, under the targets' schedules."""
    rows = [lambdas_at(m.targets, step, per_epoch, epochs) for m in live]
    return torch.tensor(rows, dtype=torch.float64, device=next(iter(live[0].model.parameters())).device)


def _permutation(state: TrainState, samples: int) -> Tensor:
    """The member's batch order for the next epoch, drawn as its run alone draws it."""
    assert state.partial is None, "a fused group starts its members fresh; a run resumes alone"
    state.epoch_start = state.shuffle.get_state()
    return torch.randperm(samples, generator=state.shuffle)


def _sync(group: FusedModel, live: list[Member], sums: Tensor, recent: list[Tensor], batches: int,
          names: list[str], per_epoch: int, reporter: GroupProgress) -> list[int]:
    """Report the live members' running means; end every member whose loss terms went
    non-finite, as its run alone would at this sync; returns the rows that go on."""
    figures = [with_totals(dict(zip(names, means)), live[0].targets) for means in (sums / batches).tolist()]
    rows = [i for i, f in enumerate(figures) if all(math.isfinite(v) for v in f.values())]
    for i in sorted(set(range(len(live))) - set(rows)):
        member = live[i]
        progress = EpochProgress(batches, sums[i].clone(),
                                 non_finite=first_non_finite([terms[i] for terms in recent], batches, names))
        with member.context():
            member.done(early_end(member.state, progress, per_epoch, member.save))
    if len(rows) < len(live) and rows:
        group.keep(rows)
    recent.clear()
    if rows:
        reporter.step(batches, [figures[i] for i in rows])
    return rows
