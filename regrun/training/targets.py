"""Regularization targets: which tensors of a model get which penalty, and how strongly.

A target spec (one entry of `reg.targets` in the config) selects modules as
training/selection.py says (`layers`, `types`, `exclude`), and its `site` says what of
them is penalized: `weights`, `biases` or `params` (their parameters), or `activations`
(the modules' outputs, captured by forward hooks). The `penalty` names an entry of the
penalty registry (components/penalties.py), with that penalty's options as keys, or a
function of the user's own as MODULE:FUNCTION (imported as `model.factory` is, and checked
before training: its signature here, a finite scalar on an example batch in `check_penalties`).

`over` says what one penalty is taken of: each selected tensor alone, summed (`tensor`, the
default: l2_norm on a layer's params is ‖W‖ + ‖b‖); all the selected tensors of each module
as one vector (`module`: ‖[W, b]‖ per layer, group lasso with a layer as the group); or all
the target selects as one vector (`target`: thread 000's torch.norm(torch.cat(params), 2)).
On activations, a group is the outputs of its modules, concatenated per sample.

A resolved `Target` computes its raw penalty as a pure function of a parameter mapping
and the captured activations, so that the same code serves a vectorized multi-λ model.

`proximal: true` (L1 or group lasso on parameters) applies the penalty as a proximal step
instead of a gradient: after each optimizer step every targeted tensor is soft-thresholded
by lr·λ (group lasso: each row or filter as a whole, block soft-thresholding), which sets
small entries, or whole small groups, to exactly 0. Its penalty is still reported in the breakdown.

A spec is read as a `TargetSpec` when the config is checked (regrun/schema.py's `parse`:
every mistake a one-line `RegrunError` naming the bad value and what is allowed), and
resolved against the model by `resolve_target`.
"""

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from torch import Tensor, nn

from regrun.components.penalties import PENALTIES, Penalty, as_penalty
from regrun.components.user_code import is_callable_spec, load_callable
from regrun.errors import RegrunError, choices, contained, one_line
from regrun.measure.capture import forward_hooks, output_shapes
from regrun.schema import FLATTEN, OPTIONS, AtLeast, Range, parse, read_node
from regrun.training.schedules import Schedule
from regrun.training.selection import PARAM_SITES, Selection, match_modules, site_params

Site = Literal["weights", "biases", "params", "activations"]
SITES = (*PARAM_SITES, "activations")

# How an activation penalty is reduced over a batch of outputs of shape (B, ...):
REDUCTIONS = {
    "batch_mean": "penalty of each sample's output, averaged over the batch (default)",
    "sum": "penalty of the whole batch tensor",
    "mean": "penalty of the whole batch tensor divided by its element count",
}
Reduction = Literal["batch_mean", "sum", "mean"]
Over = Literal["tensor", "module", "target"]


@dataclass(frozen=True)
class TargetSpec:
    """One entry of `reg.targets`, read and checked: what to select, where, which penalty,
    how strong, and when. Resolved against a model by `resolve_target`."""

    site: Site
    penalty: str
    lam: Annotated[float, AtLeast(0)] = field(metadata={"key": "lambda"})
    selection: Selection = field(default_factory=Selection, metadata=FLATTEN)
    reduction: Reduction | None = None  # activations only; None: batch_mean
    over: Over = "tensor"  # one penalty per tensor, per module's tensors together, or of all together
    proximal: Literal[True, False, "adaptive"] = False
    schedule: Schedule = field(default_factory=Schedule, metadata=FLATTEN)
    options: Mapping[str, float] = field(default_factory=dict, metadata=OPTIONS)  # the penalty's own

    @classmethod
    def from_node(cls, where: str, node: object) -> "TargetSpec":
        """The target node at `where`: its penalty named first, since its options are keys too."""
        penalty = node.get("penalty") if isinstance(node, Mapping) else None
        if is_callable_spec(penalty) and penalty not in PENALTIES:
            assert isinstance(penalty, str)
            PENALTIES.register(penalty, as_penalty(penalty, load_callable(penalty, f"{where}.penalty",
                                                                            "my_penalties:squared_l1")))
        record = PENALTIES.get(penalty) if isinstance(penalty, str) else None
        if record is None and isinstance(node, Mapping) and "penalty" in node:
            raise RegrunError(f"{where}.penalty: unknown penalty {penalty!r}; allowed: {choices(PENALTIES)}, "
                              "or a function of your own as MODULE:FUNCTION")
        options = dict(record.options) if record else {}
        if isinstance(node, Mapping):
            for key in node:
                owners = [name for name, r in PENALTIES.items() if key in r.options]
                if owners and key not in options:
                    raise RegrunError(f"{where}.{key}: only for penalty {choices(owners)}, not {penalty!r}")
        hints = {key: Annotated[float, Range(lo, hi)] for key, (lo, hi) in options.items()}
        return parse(where, node, cls, options=hints)

    def validate(self, where: str) -> None:
        """What spans keys: a penalty for parameters on activations, a reduction or a proximal
        step where it does not apply, a penalty function that cannot be called as needed."""
        check_signature(where, self)
        if self.site == "activations" and PENALTIES[self.penalty].parameter_only:
            raise RegrunError(f"{where}.penalty: {self.penalty} groups a parameter's output units; use it with "
                              "site weights, biases or params")
        if self.reduction is not None and self.site != "activations":
            raise RegrunError(f"{where}.reduction applies to site 'activations' only, not {self.site!r}")
        if self.proximal and (PENALTIES[self.penalty].prox is None or self.site == "activations"):
            with_prox = [name for name, record in PENALTIES.items() if record.prox is not None]
            raise RegrunError(f"{where}.proximal applies to penalty {choices(with_prox)} on weights, biases or "
                              f"params, not {self.penalty!r} on {self.site!r}")
        if self.proximal and self.over != "tensor":
            raise RegrunError(f"{where}.proximal shrinks each tensor on its own; it takes over=tensor, "
                              f"not {self.over!r}")
        if self.proximal == "adaptive" and not PENALTIES[self.penalty].additive:
            raise RegrunError(f"{where}.proximal=adaptive scales each entry's threshold by Adam's step for it; "
                              f"{self.penalty!r} thresholds groups of entries: use proximal=true")


def check_signature(where: str, spec: TargetSpec) -> None:
    """The penalty function takes a tensor, and `dims` where a per-sample reduction needs them."""
    record = PENALTIES[spec.penalty]
    try:
        signature = inspect.signature(record.fn)
    except (TypeError, ValueError):  # a builtin without one: called as it comes
        return
    try:
        signature.bind(torch.zeros(1), **dict.fromkeys(record.options, 0.0))
    except TypeError as err:
        raise RegrunError(f"{where}.penalty: {spec.penalty} cannot be called as fn(x) with one tensor: {err}") from err
    per_sample = spec.site == "activations" and spec.reduction in (None, "batch_mean") and not record.additive
    takes_dims = "dims" in signature.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    if per_sample and not takes_dims:
        raise RegrunError(f"{where}.penalty: {spec.penalty} takes no `dims`, which reduction=batch_mean on "
                          "activations passes (fn(x, dims=(1, ...)), per sample); add a dims=None parameter, "
                          "or set reduction to sum or mean")


@dataclass(frozen=True)
class RegSettings:
    """The `reg` node: its `targets`, a mapping of target name to spec (null: none)."""

    targets: dict[str, TargetSpec] = field(default_factory=dict)

    @classmethod
    def from_node(cls, where: str, node: object) -> "RegSettings":
        """Read `targets` whatever the spelling of none (absent, null, {})."""
        targets = read_targets(node.get("targets") if isinstance(node, Mapping) else None, f"{where}.targets")
        return parse(where, node, cls, targets=targets)


def read_targets(node: object, where: str = "reg.targets") -> dict[str, TargetSpec]:
    """The `reg.targets` mapping of target name to node, each read as a `TargetSpec`."""
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise RegrunError(f"{where} must be a mapping of target name to spec, got {node!r}")
    return {str(name): TargetSpec.from_node(f"{where}.{name}", spec) for name, spec in node.items()}


@dataclass(frozen=True)
class Target:
    """A resolved regularization target."""

    name: str
    site: str
    penalty: str
    lam: float
    modules: tuple[str, ...]
    params: tuple[str, ...] = ()  # parameter names; empty for the activations site
    # What each penalty is taken of (`over`): parameter names, or module names for activations.
    groups: tuple[tuple[str, ...], ...] = ()
    over: str = "tensor"
    reduction: str = "batch_mean"
    options: Mapping[str, float] = field(default_factory=dict)
    proximal: bool = False  # L1 on parameters applied as soft-thresholding after each step
    schedule: Schedule = field(default_factory=Schedule)  # λ's factor at each step
    adaptive: bool = False  # proximal threshold scaled per coordinate like Adam's step

    @property
    def on_activations(self) -> bool:
        """True when the target penalizes module outputs rather than parameters."""
        return self.site == "activations"

    @property
    def record(self) -> Penalty:
        """The penalty's registry record."""
        return PENALTIES[self.penalty]

    def raw(self, params: Mapping[str, Tensor], activations: Mapping[str, Sequence[Tensor]]) -> Tensor:
        """The unweighted penalty; a pure function of parameters and captured outputs."""
        if self.on_activations:
            terms = [self._reduced(out) for group in self.groups for out in self._outputs(group, activations)]
        else:
            terms = [self._of_tensors([params[name] for name in group]) for group in self.groups]
        if not terms:  # a module that did not run this step contributes nothing
            return next(iter(params.values())).new_zeros(())
        return sum(terms[1:], terms[0])

    def lam_at(self, step: int, steps_per_epoch: int, epochs: int) -> float:
        """λ in effect at global step `step` (1-based), under the target's schedule."""
        return self.lam if self.schedule.constant else self.lam * self.schedule.factor(step, steps_per_epoch, epochs)

    def shrink_(self, params: Mapping[str, Tensor], lr_of: Mapping[str, float], lam: float | Tensor,
                optimizer: torch.optim.Optimizer | None = None) -> None:
        """Apply the penalty's proximal operator to each targeted parameter in place (a
        proximal step: L1's soft-thresholding, group lasso's per group) by lr·λ, or,
        when adaptive, by λ times Adam's per-coordinate step size lr/(√v̂ + ε).

        For stacked parameters (a fused group, one member per slice of dim 0) `lam` holds each
        member's λ, in float64 as a Python float is, so that lr·λ rounds as it does alone.
        """
        prox = self.record.prox
        assert prox is not None, "a proximal target's penalty has a proximal operator (TargetSpec.validate)"
        stacked = isinstance(lam, Tensor)
        with torch.no_grad():
            for name in self.params:
                p = params[name]
                threshold = lr_of[name] * lam
                if isinstance(threshold, Tensor):
                    threshold = threshold.to(p.dtype).reshape(-1, *[1] * (p.ndim - 1))
                if self.adaptive and optimizer is not None:
                    threshold = threshold / adam_denominator(optimizer, p)
                p.copy_(prox(p, threshold, stacked=stacked))

    def _of_tensors(self, tensors: Sequence[Tensor]) -> Tensor:
        """The penalty of one group: of its tensor alone, or of all its entries as one vector."""
        record = self.record
        if self.over == "tensor":
            return record.fn(tensors[0], **self.options)
        flat = torch.cat([t.reshape(-1) for t in tensors])
        return (record.group or record.fn)(flat, **self.options)

    def _outputs(self, group: Sequence[str], activations: Mapping[str, Sequence[Tensor]]) -> list[Tensor]:
        """The outputs one group is penalized on: each call's output alone, or all of them
        concatenated per sample, (B, entries)."""
        outputs = [out for name in group for out in activations[name]]
        if self.over == "tensor" or not outputs:
            return outputs
        return [torch.cat([out.reshape(len(out), -1) for out in outputs], dim=1)]

    def _reduced(self, out: Tensor) -> Tensor:
        fn = self.record.fn
        if self.reduction == "batch_mean" and not self.record.additive:
            return fn(out, dims=tuple(range(1, out.ndim)), **self.options).mean()
        total = fn(out, **self.options)
        if self.reduction == "sum":
            return total
        return total / (out.shape[0] if self.reduction == "batch_mean" else out.numel())


def adam_denominator(optimizer: torch.optim.Optimizer, param: Tensor) -> Tensor | float:
    """√v̂ + ε of Adam/AdamW for `param`: its update is lr·m̂/(√v̂ + ε), so lr/(√v̂ + ε) is each
    coordinate's step size; 1 before the optimizer's first step."""
    state = optimizer.state.get(param, {})
    if "exp_avg_sq" not in state:
        return 1.0
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    step = float(state["step"])
    v_hat = state["exp_avg_sq"] / (1.0 - group["betas"][1] ** step)
    return v_hat.sqrt().add_(group["eps"])


def resolve_targets(model: nn.Module, specs: Mapping[str, TargetSpec | Mapping[str, Any]]) -> list[Target]:
    """Resolve every target against the model; fail on the first that selects nothing."""
    return [resolve_target(model, name, spec) for name, spec in specs.items()]


def resolve_target(model: nn.Module, name: str, spec: TargetSpec | Mapping[str, Any]) -> Target:
    """The modules and parameters a target spec (checked, or a mapping read as one) selects in `model`."""
    where = f"reg.targets.{name}"
    spec = read_node(where, spec, TargetSpec)
    modules = match_modules(model, where, spec.selection)
    params = [] if spec.site == "activations" else site_params(model, where, spec.site, modules)
    return Target(name, spec.site, spec.penalty, spec.lam, tuple(modules), tuple(params),
                  group_names(spec.over, modules, params), spec.over, spec.reduction or "batch_mean",
                  dict(spec.options), bool(spec.proximal), spec.schedule, spec.proximal == "adaptive")


def group_names(over: str, modules: Sequence[str], params: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The names each penalty of a target is taken of: each tensor (or module, for
    activations) alone, each module's together, or all together. A parameter belongs to
    the first selected module that holds it, as `site_params` lists them."""
    names = list(params or modules)
    if over == "target":
        return (tuple(names),)
    if over == "tensor" or not params:
        return tuple((n,) for n in names)
    owner = {p: next(m for m in modules if m == "" or p.startswith(f"{m}.")) for p in params}
    return tuple(tuple(p for p in params if owner[p] == m) for m in modules if m in owner.values())


def describe_targets(targets: Sequence[Target], model: nn.Module, example: Tensor) -> list[dict]:
    """One row per penalized tensor: target, site, penalty, λ, tensor name, shape, elements.

    Activation shapes are per sample, from one forward pass of `example`.
    """
    act_modules = sorted({m for t in targets if t.on_activations for m in t.modules})
    shapes = output_shapes(model, example, act_modules) if act_modules else {}
    _check_ran(targets, model, shapes)
    params = dict(model.named_parameters())
    rows = []
    for t in targets:
        names = t.modules if t.on_activations else t.params
        for name in names:
            shape = shapes[name] if t.on_activations else tuple(params[name].shape)
            rows.append({
                "target": t.name, "site": t.site, "penalty": t.penalty, "formula": t.record.formula, "lambda": t.lam,
                "reduction": t.reduction if t.on_activations else None, "over": t.over, "proximal": "adaptive" if t.adaptive else t.proximal, **t.options,
                "tensor": name, "shape": list(shape), "numel": math.prod(shape),
            })
    return rows


def check_penalties(targets: Sequence[Target], model: nn.Module, example: Tensor) -> None:
    """Each target's penalty on one forward of `example` (eval mode, as built): a finite
    floating-point scalar, or a one-line error naming the target and what its penalty gave.

    Before training, so that a plugin's or the command line's penalty function that raises,
    returns a vector or NaN is refused before any file is written, not at step 1.
    """
    watched = sorted({m for t in targets if t.on_activations for m in t.modules})
    outputs: dict[str, list[Tensor]] = {m: [] for m in watched}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), forward_hooks(model, watched, lambda name, out: outputs[name].append(out.clone())):
            model(example)
    finally:
        model.train(was_training)
    params = dict(model.named_parameters())
    for t in targets:
        where = f"reg.targets.{t.name}.penalty: {t.penalty}"
        try:
            with contained(where), torch.no_grad():
                value = t.raw(params, outputs)
        except RegrunError:
            raise
        except Exception as err:  # the user's or a plugin's function
            raise RegrunError(f"{where} raised {one_line(err)} on an example batch") from err
        if not isinstance(value, Tensor) or value.ndim != 0 or not value.is_floating_point():
            got = f"shape {tuple(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
            raise RegrunError(f"{where} returned {got} on an example batch; a penalty must be a floating-point "
                              "scalar (reduce it, e.g. with .sum())")
        if not torch.isfinite(value):
            raise RegrunError(f"{where} is {value.item()} on an example batch (zero inputs); a penalty must be "
                              "finite there")


def _check_ran(targets: Sequence[Target], model: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Every module an activation target selects must run in the forward: a container
    (`ModuleList`) or an unused layer has no output, and would silently add nothing."""
    modules = dict(model.named_modules())
    for t in targets:
        idle = [m for m in t.modules if t.on_activations and m not in shapes]
        if idle:
            listed = ", ".join(f"{m} ({type(modules[m]).__name__})" for m in idle)
            raise RegrunError(f"reg.targets.{t.name}: {listed} never run in the model's forward, so they have no "
                              "output to penalize; narrow `layers` or add them to `exclude`")
