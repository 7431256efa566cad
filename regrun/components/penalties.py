"""Penalty functions: pure functions of a tensor, reduced over the given dimensions.

Conventions (Keras's, so figures compare with the anchors):
    l1          Σ|x|
    l2          Σx²                       (no ½)
    elastic_net ρ·Σ|x| + (1−ρ)·Σx²        (ρ = l1_ratio)
    hoyer       Σ|x| / sqrt(Σx²)          (DeepHoyer; 0 for an all-zero input)
    hoyer_square (Σ|x|)² / Σx²            (DeepHoyer; 0 for an all-zero input)
    group_lasso Σ_g sqrt(Σ_{x∈g} x²)      (parameters only; a group is one slice along
                                           dim 0: an output unit's row of a Linear, a
                                           filter of a Conv2d; a bias entry alone)

`dims=None` reduces over every dimension; a tuple reduces over those only, which is how
an activation penalty is taken per sample before averaging over the batch.

The gradient of |x| at exactly 0 is 0 (torch's sign(0) = 0), so an L1 penalty never pushes
an entry that is already zero. `F.l1_loss` differs there (its gradient at 0 is ±1). The
same holds for a group of zeros under group lasso (torch's norm has gradient 0 at 0).
"""

from collections.abc import Callable

import torch
from torch import Tensor

Dims = tuple[int, ...] | None

def _sum(x: Tensor, dims: Dims) -> Tensor:
    return x.sum() if dims is None else x.sum(dim=dims)


def l1(x: Tensor, dims: Dims = None) -> Tensor:
    """Σ|x|."""
    return _sum(x.abs(), dims)


def l2(x: Tensor, dims: Dims = None) -> Tensor:
    """Σx² (Keras convention: no ½)."""
    return _sum(x.square(), dims)


def elastic_net(x: Tensor, dims: Dims = None, l1_ratio: float = 0.5) -> Tensor:
    """ρ·Σ|x| + (1−ρ)·Σx² with ρ = l1_ratio in [0, 1]."""
    return l1_ratio * l1(x, dims) + (1.0 - l1_ratio) * l2(x, dims)


def _l1_over_l2(x: Tensor, dims: Dims) -> tuple[Tensor, Tensor]:
    # clamp keeps an all-zero input at 0 instead of 0/0; tiny enough not to bias real values.
    norm2 = l2(x, dims).sqrt().clamp_min(torch.finfo(x.dtype).tiny)
    return l1(x, dims), norm2


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


def soft_threshold(x: Tensor, threshold: float) -> Tensor:
    """The proximal operator of threshold·Σ|x|: sign(x)·max(|x| − threshold, 0).

    Entries within the threshold of 0 become exactly 0, which subgradient steps on Σ|x|
    almost never produce.
    """
    return x.sign() * (x.abs() - threshold).clamp_min(0.0)


PENALTIES: dict[str, Callable[..., Tensor]] = {
    "l1": l1,
    "l2": l2,
    "elastic_net": elastic_net,
    "hoyer": hoyer,
    "hoyer_square": hoyer_square,
    "group_lasso": group_lasso,
}

# Penalties defined on parameters only (their groups are a parameter's output slices).
PARAMETER_ONLY = frozenset({"group_lasso"})

# Penalties that are sums over elements: for them the mean over a batch of per-sample
# penalties equals the whole-batch penalty divided by the batch size, which takes fewer
# kernels and autograd nodes in the hot loop.
ADDITIVE = frozenset({"l1", "l2", "elastic_net"})

# Options a penalty accepts beyond (x, dims), with their allowed ranges.
PENALTY_OPTIONS: dict[str, dict[str, tuple[float, float]]] = {
    "elastic_net": {"l1_ratio": (0.0, 1.0)},
}
