"""Penalties by name: pure functions of a tensor, reduced over the given dimensions, one
record each in the `PENALTIES` registry.

Conventions (Keras's, so figures compare with the anchors):
    l1          Σ|x|
    l2          Σx²                       (no ½)
    l2_norm     sqrt(Σx²)                 (torch.norm(x, 2): not squared)
    elastic_net ρ·Σ|x| + (1−ρ)·Σx²        (ρ = l1_ratio)
    hoyer       Σ|x| / sqrt(Σx²)          (DeepHoyer; 0 for an all-zero input)
    hoyer_square (Σ|x|)² / Σx²            (DeepHoyer; 0 for an all-zero input)
    group_lasso Σ_g sqrt(Σ_{x∈g} x²)      (parameters only; a group is one slice along
                                           dim 0: an output unit's row of a Linear, a
                                           filter of a Conv2d; a bias entry alone)

`dims=None` reduces over every dimension; a tuple reduces over those only, which is how
an activation penalty is taken per sample before averaging over the batch. A target over
several tensors sums their penalties by default (`over: tensor`): l2_norm on a layer's
`params` is ‖W‖ + ‖b‖. With `over: module` or `over: target` the tensors of each selected
module, or all the target selects, are one group, penalized as one vector of their entries
(torch.norm(torch.cat([W.flatten(), b]), 2)); a record's `group` says what a penalty is of
such a group when that is not `fn` of the vector (group lasso: the group's L2 norm).

The gradient of |x| at exactly 0 is 0 (torch's sign(0) = 0), so an L1 penalty never pushes
an entry that is already zero. `F.l1_loss` differs there (its gradient at 0 is ±1). The
same holds for a norm of zeros (l2_norm, a zero group under group lasso): torch's
vector_norm has gradient 0 at 0, where `x.square().sum().sqrt()` gives NaN.

A plugin adds a penalty with `register_penalty`, or through the entry-point group
`regrun.penalties` naming a `Penalty` record (or a plain function, registered as a
non-additive penalty without options).
"""

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import Tensor

from regrun.components.registry import Registry

Dims = tuple[int, ...] | None


def _sum(x: Tensor, dims: Dims) -> Tensor:
    return x.sum() if dims is None else x.sum(dim=dims)


def l1(x: Tensor, dims: Dims = None) -> Tensor:
    """Σ|x|."""
    return _sum(x.abs(), dims)


def l2(x: Tensor, dims: Dims = None) -> Tensor:
    """Σx² (Keras convention: no ½)."""
    return _sum(x.square(), dims)


def l2_norm(x: Tensor, dims: Dims = None) -> Tensor:
    """sqrt(Σx²), the unsquared L2 norm; its gradient at an all-zero input is 0, not NaN."""
    return torch.linalg.vector_norm(x, dim=dims)


def elastic_net(x: Tensor, dims: Dims = None, l1_ratio: float = 0.5) -> Tensor:
    """ρ·Σ|x| + (1−ρ)·Σx² with ρ = l1_ratio in [0, 1]."""
    return l1_ratio * l1(x, dims) + (1.0 - l1_ratio) * l2(x, dims)


def _l1_over_l2(x: Tensor, dims: Dims) -> tuple[Tensor, Tensor]:
    # clamp keeps an all-zero input at 0 instead of 0/0; tiny enough not to bias real values.
    return l1(x, dims), l2_norm(x, dims).clamp_min(torch.finfo(x.dtype).tiny)


def hoyer(x: Tensor, dims: Dims = None) -> Tensor:
    """Σ|x| / sqrt(Σx²): scale-invariant; between 1 (one non-zero) and sqrt(n)."""
    num, den = _l1_over_l2(x, dims)
    return num / den


def hoyer_square(x: Tensor, dims: Dims = None) -> Tensor:
    """(Σ|x|)² / Σx²: DeepHoyer's almost-everywhere differentiable variant."""
    num, den = _l1_over_l2(x, dims)
    return (num / den).square()


def group_lasso(x: Tensor, dims: Dims = None) -> Tensor:
    """Σ over the slices x[g] along dim 0 of their L2 norms (Distiller's group lasso, ε = 0)."""
    if dims is not None:
        raise ValueError("group_lasso groups a parameter along dim 0; it takes no reduction dims")
    rows = x.reshape(x.shape[0], -1) if x.ndim > 0 else x.reshape(1, 1)
    return torch.linalg.vector_norm(rows, dim=1).sum()


def soft_threshold(x: Tensor, threshold: float | Tensor, stacked: bool = False) -> Tensor:
    """The proximal operator of threshold·Σ|x|: sign(x)·max(|x| − threshold, 0).

    Entries within the threshold of 0 become exactly 0, which subgradient steps on Σ|x|
    almost never produce. Elementwise, so the same for `stacked` copies (a fused group's).
    """
    return x.sign() * (x.abs() - threshold).clamp_min(0.0)


def group_soft_threshold(x: Tensor, threshold: float | Tensor, stacked: bool = False) -> Tensor:
    """The proximal operator of threshold·Σ_g ‖x_g‖₂ over group_lasso's groups (the slices
    along dim 0; along dim 1 of `stacked` copies, one per slice of dim 0): each group scaled
    by max(1 − threshold/‖x_g‖₂, 0), so that a group within the threshold of 0 becomes
    exactly 0 as a whole (block soft-thresholding)."""
    lead = 2 if stacked else 1
    norms = torch.linalg.vector_norm(x, dim=tuple(range(lead, x.ndim)), keepdim=True) if x.ndim > lead else x.abs()
    return x * (1.0 - threshold / norms.clamp_min(torch.finfo(x.dtype).tiny)).clamp_min(0.0)


@dataclass(frozen=True)
class Penalty:
    """One penalty: its function and the facts the targets need about it.

    `fn(x, dims=None, **options)` returns the penalty of `x` reduced over `dims` (all of
    them for None); it must be differentiable where training should move.
    """

    fn: Callable[..., Tensor]
    formula: str  # "Σ|x|": written beside the penalty's name in targets.json
    # A sum over elements: the mean of per-sample penalties over a batch is then the whole
    # batch's penalty over its size, which takes fewer kernels in the hot loop.
    additive: bool = False
    # Defined on parameters only (group lasso's groups are a parameter's output slices).
    parameter_only: bool = False
    # Options beyond (x, dims), each a number in [lo, hi]; a target gives them as keys.
    options: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # Its proximal operator, prox(x, threshold, stacked): what `proximal: true` applies after
    # each step instead of the gradient; None: the penalty has none here.
    prox: Callable[..., Tensor] | None = None
    # The penalty of a group of tensors taken as one (`over: module|target`), given their
    # entries as one flat vector, with the options as keywords; None: `fn` of that vector.
    group: Callable[..., Tensor] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))  # truly frozen
        accepted = inspect.signature(self.fn).parameters
        for name, (lo, hi) in self.options.items():
            if name in ("x", "dims") or name not in accepted:
                raise ValueError(f"penalty option {name!r} is not a keyword parameter of {self.fn.__name__}")
            if not lo <= hi:
                raise ValueError(f"penalty option {name!r}: range [{lo}, {hi}] is empty")


def as_penalty(name: str, loaded: object) -> Penalty:
    """An entry point's object as a record: a `Penalty` as it is, a function as a plain penalty."""
    if isinstance(loaded, Penalty):
        return loaded
    if not callable(loaded):
        raise TypeError(f"{loaded!r} is neither a Penalty nor a function")
    return Penalty(loaded, formula=(loaded.__doc__ or name).strip().splitlines()[0])


# name → record; `reg.targets.NAME.penalty` names an entry
PENALTIES: Registry[Penalty] = Registry("penalty", "regrun.penalties", wrap=as_penalty)


def register_penalty(name: str, fn: Callable[..., Tensor], formula: str, *, additive: bool = False,
                     parameter_only: bool = False, options: Mapping[str, tuple[float, float]] | None = None,
                     prox: Callable[..., Tensor] | None = None, group: Callable[..., Tensor] | None = None,
                     replace: bool = False) -> Penalty:
    """Make `penalty: NAME` in a target compute `fn(x, dims, **options)`; returns the record.

    `additive`: fn is a sum over elements (Σ f(x_i)); `parameter_only`: fn makes sense on
    parameters only; `options`: name → (lo, hi), the keyword options fn takes and their
    allowed range, given in a target as keys of their own (`l1_ratio: 0.3`); `prox`: its
    proximal operator `prox(x, threshold, stacked)`, for `proximal: true`; `group`: the penalty
    of a whole group of tensors given as one flat vector (`over: module|target`), when it is
    not `fn` of that vector.
    """
    record = Penalty(fn, formula, additive, parameter_only, options or {}, prox, group)
    return PENALTIES.register(name, record, replace)


register_penalty("l1", l1, "Σ|x|", additive=True, prox=soft_threshold)
register_penalty("l2", l2, "Σx²", additive=True)
register_penalty("l2_norm", l2_norm, "sqrt(Σx²)")
register_penalty("elastic_net", elastic_net, "ρ·Σ|x| + (1−ρ)·Σx²", additive=True,
                 options={"l1_ratio": (0.0, 1.0)})
register_penalty("hoyer", hoyer, "Σ|x| / sqrt(Σx²)")
register_penalty("hoyer_square", hoyer_square, "(Σ|x|)² / Σx²")
# Over a module or a target, the group of group lasso is that whole module or target.
register_penalty("group_lasso", group_lasso, "Σ_rows sqrt(Σ_row x²)", parameter_only=True,
                 prox=group_soft_threshold, group=l2_norm)

