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

The members' own modules and optimizers are kept: the loop (regrun/training/loop.py) has
their slices copied back into them when an epoch ends. A group is built from its members
as they stand, optimizer state included, so a group checkpointed part-way continues as one.
A member whose loss goes NaN/Inf is dropped from the stacks; the others go on.
"""

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from regrun.components.tasks import Task
from regrun.measure.capture import ActivationCapture
from regrun.measure.firing import firing
from regrun.training.loop import Member
from regrun.training.step import forward, learning_rates, step_loss

# Optimizers whose update of an element depends on that element's gradient and state only:
# one of them over stacked tensors steps every member as its own would.
ELEMENTWISE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)


def not_fusable(model: nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """Why a run cannot train in a fused group, or None when it can."""
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return "its model has dropout, whose random masks inside vmap would differ from the run's own"
    if type(optimizer) not in ELEMENTWISE_OPTIMIZERS:
        return (f"its optimizer {type(optimizer).__name__} is not one known to update each element on its own "
                f"({', '.join(o.__name__ for o in ELEMENTWISE_OPTIMIZERS)})")
    return None


class FusedModel:
    """M members' parameters, buffers and optimizer state, stacked, stepped as one."""

    def __init__(self, members: Sequence[Member]):
        template = members[0].model
        self.targets = members[0].targets  # structure shared by all; each member's λ in `lams`
        self.module = copy.deepcopy(template).to("meta")  # the forward's code; its tensors come from the stacks
        self.params, self.buffers = stack_module_state([m.model for m in members])
        self.fired: dict[str, Tensor] = {}  # the last step's firing of each captured module, (M, units)
        dtype = next(iter(self.params.values())).dtype
        device = next(iter(self.params.values())).device
        # float64 like a Python float, for lr·λ; the loss uses the parameters' dtype, as λ·raw does alone
        self.lams64 = torch.tensor([[t.lam for t in m.targets] for m in members], dtype=torch.float64,
                                   device=device).reshape(len(members), len(self.targets))
        self.lams = self.lams64.to(dtype)
        name_of = {id(p): name for name, p in template.named_parameters()}
        self._names = [[name_of[id(p)] for p in group["params"]] for group in members[0].optimizer.param_groups]
        self.optimizer = self._optimizer(members[0].optimizer)
        self._stack_state([m.model for m in members], [m.optimizer for m in members])

    def _stack_state(self, models: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """The members' optimizer state (a checkpoint's, when they continue), stacked like
        their parameters; fresh members have none."""
        for name, stacked in self.params.items():
            own = [dict(model.named_parameters())[name] for model in models]
            states = [state for optimizer, p in zip(optimizers, own) if (state := optimizer.state.get(p))]
            if len(states) == len(own):
                self.optimizer.state[stacked] = {key: _stacked([s[key] for s in states], stacked)
                                                 for key in states[0]}

    def _optimizer(self, like: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """An optimizer of `like`'s class, implementation (fused kernel, foreach or loop) and
        param groups over the stacked parameters."""
        groups = [{**{k: v for k, v in group.items() if k != "params"}, "params": [self.params[n] for n in names]}
                  for group, names in zip(like.param_groups, self._names)]
        return cast(Any, type(like))(groups)  # each group carries `like`'s fused/foreach choice, which its step reads

    def step(self, task: Task, x: Tensor, y: Tensor, capture: ActivationCapture,
             lams: Sequence[Sequence[float]] | None = None) -> Tensor:
        """One step of every member on its batch x[m], y[m]; returns the loss terms, (M, terms).

        `lams`: each member's λ of each target at this step, when a schedule moves them; by
        default their full λ.
        """
        targets = self.targets
        lams64 = self.lams64 if lams is None else torch.tensor(lams, dtype=torch.float64, device=self.lams.device)
        lams_loss = self.lams if lams is None else lams64.to(self.lams.dtype)

        def member_loss(params: dict, buffers: dict, x: Tensor, y: Tensor,
                        lams: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
            output = forward(lambda x: functional_call(self.module, (params, buffers), (x,)), x)
            activations = capture.take()
            loss, terms = step_loss(task, output, task.reference(x, y), targets, params, activations, lams)
            return loss, terms, firing(activations)

        losses, terms, self.fired = vmap(member_loss, randomness="error")(self.params, self.buffers, x, y, lams_loss)
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

    def export(self, row: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Copy member `row`'s parameters, buffers and optimizer state into its own model and optimizer."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][row])
            for name, b in model.named_buffers():
                b.copy_(self.buffers[name][row])
        for name, p in model.named_parameters():
            stacked = self.params[name]
            if stacked in self.optimizer.state:
                optimizer.state[p] = {k: _rows(v, stacked, row) for k, v in self.optimizer.state[stacked].items()}


def _rows(value: object, param: Tensor, index: int | Tensor) -> object:
    """A slice of an optimizer state entry shaped like its stacked parameter; a copy of any other
    (Adam's step count is one scalar per tensor, the same for every member)."""
    if isinstance(value, Tensor):
        return value[index].clone() if value.shape == param.shape else value.clone()
    return copy.deepcopy(value)


def _stacked(values: Sequence[object], param: Tensor) -> object:
    """The members' entries of one optimizer state slot as one entry of the stacked parameter:
    stacked where they are shaped like a member's parameter, else the first's (Adam's step
    count is one scalar per tensor, the same for every member of a group)."""
    first = values[0]
    if isinstance(first, Tensor) and first.shape == param.shape[1:]:
        return torch.stack([cast(Tensor, v).to(param.device) for v in values])
    return first.clone() if isinstance(first, Tensor) else copy.deepcopy(first)
