"""One optimisation step: forward (hooks capture the targeted outputs), the task's loss, each
target's raw penalty and λ·raw, backward on task + Σ λ·raw, the optimizer's step, and the
proximal targets' soft-thresholding.

The step returns its loss terms as one detached tensor, which the loop sums on the device
(in float64): it synchronises with the device only when it reports. `SoloStep` drives one
run's own model; `regrun/training/fused.py`'s `FusedModel` drives a group's stacked copies
through the same `step_loss`.
"""

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from regrun.components.tasks import Task
from regrun.layout import PENALTY_TOTAL, TASK_LOSS, TOTAL_LOSS, penalty_column
from regrun.measure.capture import ActivationCapture
from regrun.measure.firing import firing
from regrun.training.targets import Target


class UserCodeFailed(Exception):
    """Code a run plugs in (its model, a penalty) raised inside a step: `where` names it."""

    def __init__(self, where: str, error: Exception):
        super().__init__(f"{where}: {error}")
        self.where, self.error = where, error


def forward(model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The model's output for `x` (its module, or a functional call of it); its own exception
    is a `UserCodeFailed` naming the forward."""
    try:
        return model(x)
    except Exception as err:
        raise UserCodeFailed("the model's forward", err) from err


def loss_terms(targets: Sequence[Target]) -> list[str]:
    """Names of the figures one step returns, in order."""
    names = [TASK_LOSS]
    names += [penalty_column(t.name, "raw") for t in targets]
    names += [penalty_column(t.name, "weighted") for t in targets]
    return names


def train_step(model: nn.Module, task: Task, x: Tensor, y: Tensor, targets: Sequence[Target],
               params: Mapping[str, Tensor], capture: ActivationCapture, optimizer: torch.optim.Optimizer,
               lams: Sequence[float] | None = None, fired: dict[str, Tensor] | None = None) -> Tensor:
    """One optimisation step with the targets' λ in effect (`lams`; default: each target's
    full λ); returns the detached loss terms in `loss_terms` order. `fired`, when given,
    gets each captured module's `firing` in this step."""
    lams = [t.lam for t in targets] if lams is None else lams
    output = forward(model, x)
    activations = capture.take()
    if fired is not None:
        fired.update(firing(activations))
    total, terms = step_loss(task, output, task.reference(x, y), targets, params, activations, lams)
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
              activations: Mapping[str, list[Tensor]], lams: Sequence[float | Tensor] | Tensor) -> tuple[Tensor, Tensor]:
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
    try:
        if target.proximal:  # reported only: no graph to build
            with torch.no_grad():
                return target.raw(params, activations)
        return target.raw(params, activations)
    except Exception as err:  # a plugin's penalty function
        raise UserCodeFailed(f"penalty {target.penalty!r} of reg.targets.{target.name}", err) from err


def learning_rates(optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor]) -> dict[str, float]:
    """The current learning rate of each named parameter (from its optimizer param group)."""
    lr_by_id = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    return {name: lr_by_id[id(p)] for name, p in params.items()}


def with_totals(means: dict[str, float], targets: Sequence[Target]) -> dict[str, float]:
    """Add `train_penalty_total` and `train_total_loss` to the means of the loss terms."""
    penalty = sum(means[penalty_column(t.name, "weighted")] for t in targets)
    return means | {PENALTY_TOTAL: penalty, TOTAL_LOSS: means[TASK_LOSS] + penalty}


class SoloStep:
    """The step of a run alone: its own model and optimizer, a group of one."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, targets: Sequence[Target]):
        self.module = model  # the forward hooks capture its outputs
        self.optimizer = optimizer
        self.targets = targets
        self.params = dict(model.named_parameters())
        self.fired: dict[str, Tensor] = {}

    def step(self, task: Task, x: Tensor, y: Tensor, capture: ActivationCapture,
             lams: Sequence[Sequence[float]] | None = None) -> Tensor:
        """One step on the batch x[0], y[0] (a group of one's); the loss terms, (1, terms)."""
        fired: dict[str, Tensor] = {}
        terms = train_step(self.module, task, x[0], y[0], self.targets, self.params, capture, self.optimizer,
                           None if lams is None else lams[0], fired)
        self.fired = {name: f[None] for name, f in fired.items()}
        return terms[None]

    def keep(self, rows: Sequence[int]) -> None:
        """Nothing to drop: the loop ends when its one member ended."""

    def export(self, row: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Nothing to copy: the run's own model and optimizer are the ones that step."""
