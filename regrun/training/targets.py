"""Regularization targets: which tensors of a model get which penalty, and how strongly.

A target spec (one entry of `reg.targets` in the config) selects modules as
training/selection.py says (`layers`, `types`, `exclude`), and its `site` says what of
them is penalized: `weights`, `biases` or `params` (their parameters), or `activations`
(the modules' outputs, captured by forward hooks). The `penalty` names an entry of the
penalty registry (components/penalties.py), with that penalty's options as keys.

A resolved `Target` computes its raw penalty as a pure function of a parameter mapping
and the captured activations, so that the same code serves a vectorized multi-λ model.

`proximal: true` (L1 on parameters only) applies the penalty as a proximal step instead of
a gradient: after each optimizer step every targeted tensor is soft-thresholded by lr·λ,
which sets small entries to exactly 0. Its penalty is still reported in the breakdown.

Every mistake in a spec is a `RegrunError` naming the bad value and what is allowed.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from regrun.components.penalties import PENALTIES, Penalty, soft_threshold
from regrun.errors import RegrunError, choices, is_number
from regrun.measure.capture import output_shapes
from regrun.training.schedules import SCHEDULE_KEYS, Schedule, parse_schedule
from regrun.training.selection import PARAM_SITES, SELECT_KEYS, match_modules, one_of, site_params

SITES = (*PARAM_SITES, "activations")

# How an activation penalty is reduced over a batch of outputs of shape (B, ...):
REDUCTIONS = {
    "batch_mean": "penalty of each sample's output, averaged over the batch (default)",
    "sum": "penalty of the whole batch tensor",
    "mean": "penalty of the whole batch tensor divided by its element count",
}
REQUIRED_KEYS = ("site", "penalty", "lambda")
OPTIONAL_KEYS = (*SELECT_KEYS, "reduction", "proximal", *SCHEDULE_KEYS)


@dataclass(frozen=True)
class Target:
    """A resolved regularization target."""

    name: str
    site: str
    penalty: str
    lam: float
    modules: tuple[str, ...]
    params: tuple[str, ...] = ()  # parameter names; empty for the activations site
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
            terms = [self._reduced(out) for name in self.modules for out in activations[name]]
        else:
            fn = self.record.fn
            terms = [fn(params[name], **self.options) for name in self.params]
        if not terms:  # a module that did not run this step contributes nothing
            return next(iter(params.values())).new_zeros(())
        return sum(terms[1:], terms[0])

    def lam_at(self, step: int, steps_per_epoch: int, epochs: int) -> float:
        """λ in effect at global step `step` (1-based), under the target's schedule."""
        return self.lam if self.schedule.constant else self.lam * self.schedule.factor(step, steps_per_epoch, epochs)

    def shrink_(self, params: Mapping[str, Tensor], lr_of: Mapping[str, float], lam: float | Tensor,
                optimizer: torch.optim.Optimizer | None = None) -> None:
        """Soft-threshold each targeted parameter in place (a proximal L1 step) by lr·λ, or,
        when adaptive, by λ times Adam's per-coordinate step size lr/(√v̂ + ε).

        For stacked parameters (a fused group, one member per slice of dim 0) `lam` holds each
        member's λ, in float64 as a Python float is, so that lr·λ rounds as it does alone.
        """
        with torch.no_grad():
            for name in self.params:
                p = params[name]
                threshold = lr_of[name] * lam
                if isinstance(threshold, Tensor):
                    threshold = threshold.to(p.dtype).reshape(-1, *[1] * (p.ndim - 1))
                if self.adaptive and optimizer is not None:
                    threshold = threshold / adam_denominator(optimizer, p)
                p.copy_(soft_threshold(p, threshold))

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


def resolve_targets(model: nn.Module, specs: Mapping[str, Mapping]) -> list[Target]:
    """Resolve every named spec against the model; fail on the first bad one."""
    return [resolve_target(model, name, spec) for name, spec in specs.items()]


def resolve_target(model: nn.Module, name: str, spec: Mapping) -> Target:
    """Validate one target spec and resolve it to module and parameter names."""
    where = f"reg.targets.{name}"
    if not isinstance(spec, Mapping):
        raise RegrunError(f"{where} must be a mapping of {choices(REQUIRED_KEYS + OPTIONAL_KEYS)}, got {spec!r}")
    allowed = REQUIRED_KEYS + OPTIONAL_KEYS + _all_option_keys()
    for key in spec:
        if key not in allowed:
            raise RegrunError(f"{where}: unknown key {key!r}; allowed: {choices(allowed)}")
    for key in REQUIRED_KEYS:
        if key not in spec:
            raise RegrunError(f"{where}: missing {key!r} (a target needs {choices(REQUIRED_KEYS)})")
    site = one_of(where, "site", spec["site"], SITES)
    penalty = one_of(where, "penalty", spec["penalty"], PENALTIES)
    if site == "activations" and PENALTIES[penalty].parameter_only:
        raise RegrunError(f"{where}.penalty: {penalty} groups a parameter's output units; use it with site weights, biases or params")
    lam = _number(f"{where}.lambda", spec["lambda"], 0.0, math.inf)
    options = _penalty_options(where, penalty, spec)
    reduction = _reduction(where, site, spec)
    proximal, adaptive = _proximal(where, site, penalty, spec)
    modules = match_modules(model, where, spec)
    params = [] if site == "activations" else site_params(model, where, site, modules)
    schedule = parse_schedule(where, spec)
    return Target(name, site, penalty, lam, tuple(modules), tuple(params), reduction, options, proximal, schedule, adaptive)


def _all_option_keys() -> tuple[str, ...]:
    """Every option name of every registered penalty (plugins register theirs at any time)."""
    return tuple(sorted({key for record in PENALTIES.values() for key in record.options}))


def _penalty_options(where: str, penalty: str, spec: Mapping) -> dict[str, float]:
    accepted = PENALTIES[penalty].options
    for key in _all_option_keys():
        if key in spec and key not in accepted:
            raise RegrunError(f"{where}.{key}: only for penalty {choices(p for p, r in PENALTIES.items() if key in r.options)}, not {penalty!r}")
    return {key: _number(f"{where}.{key}", spec[key], lo, hi) for key, (lo, hi) in accepted.items() if key in spec}


def _reduction(where: str, site: str, spec: Mapping) -> str:
    if "reduction" not in spec:
        return "batch_mean"
    if site != "activations":
        raise RegrunError(f"{where}.reduction applies to site 'activations' only, not {site!r}")
    return one_of(where, "reduction", spec["reduction"], REDUCTIONS)


def _proximal(where: str, site: str, penalty: str, spec: Mapping) -> tuple[bool, bool]:
    """(proximal, adaptive) from `proximal: false | true | adaptive`."""
    value = spec.get("proximal", False)
    if value not in (False, True, "adaptive") or (isinstance(value, int) and not isinstance(value, bool)):
        raise RegrunError(f"{where}.proximal must be true, false or adaptive, got {value!r}")
    if value and (penalty != "l1" or site == "activations"):
        raise RegrunError(f"{where}.proximal applies to penalty 'l1' on weights, biases or params, not {penalty!r} on {site!r}")
    return bool(value), value == "adaptive"


def _number(where: str, value: object, lo: float, hi: float) -> float:
    """A finite number in [lo, hi]; bools and strings are refused."""
    if not is_number(value) or math.isnan(value):
        raise RegrunError(f"{where} must be a number, got {value!r}")
    if not lo <= value <= hi or math.isinf(value):
        allowed = f"a finite number ≥ {lo:g}" if math.isinf(hi) else f"in [{lo:g}, {hi:g}]"
        raise RegrunError(f"{where} must be {allowed}, got {value!r}")
    return float(value)


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
                "reduction": t.reduction if t.on_activations else None, "proximal": "adaptive" if t.adaptive else t.proximal, **t.options,
                "tensor": name, "shape": list(shape), "numel": math.prod(shape),
            })
    return rows


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
