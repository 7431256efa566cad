"""Magnitude pruning evaluated without retraining: a model's figures with the smallest
entries of some weight tensors set to zero, at several sparsity levels.

Globally, one magnitude threshold over all the chosen tensors together: level s zeroes the
round(s·N) smallest of their N entries. Per layer (the sensitivity analysis of Distiller
and NNI): one tensor at a time, the others as they are. Entries are ranked by magnitude
once (ties in order of position, so a level zeroes exactly its count); a level
zeroes those of rank below its count in place, the figures are evaluated, and the tensors
are put back from one saved copy: no copy of the model per level, no statistics.

One row per scope and level: `scope` (`global`, or the layer), `level` (the fraction asked;
0 for the model as it is, evaluated once for every scope), `sparsity` (the fraction of the scope's entries that are zero,
which an already sparse tensor makes larger than its level) and the figures of the split.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from regrun.layout import LEVEL, PRUNE_GLOBAL, PRUNE_SPARSITY, SCOPE, split_figure


def layer_of(param: str) -> str:
    """The layer a weight tensor belongs to, as a row's scope: 'fc1.weight' → 'fc1'."""
    return param.removesuffix(".weight")


def magnitude_order(tensors: Sequence[Tensor]) -> Tensor:
    """The positions of all the tensors' entries (flattened, one after another) from the
    smallest |w| to the largest; ties in order of position."""
    return torch.cat([t.detach().abs().flatten() for t in tensors]).argsort(stable=True)


def ranks_within(order: Tensor, start: int, size: int) -> Tensor:
    """Each of the entries start..start+size's rank by |w| among themselves alone (0: the
    smallest), read off the `magnitude_order` of all: the one sort serves every scope."""
    positions = order[(order >= start) & (order < start + size)] - start if size < len(order) else order
    ranks = torch.empty_like(positions)
    ranks[positions] = torch.arange(size, device=order.device)
    return ranks


def global_masks(tensors: Mapping[str, Tensor], level: float) -> dict[str, Tensor]:
    """Per tensor, the entries that global pruning at `level` zeroes (True): the round(level·N)
    smallest |w| of all N entries together, ties in order of position, as `prune_rows` zeroes them."""
    chosen = list(tensors.values())
    total = sum(t.numel() for t in chosen)
    ranks = ranks_within(magnitude_order(chosen), 0, total).split([t.numel() for t in chosen])
    count = round(level * total)
    return {name: (rank < count).view_as(t) for (name, t), rank in zip(tensors.items(), ranks)}


def zero_fraction(tensors: Sequence[Tensor]) -> float:
    """The fraction of all the tensors' entries that are exactly zero."""
    return sum(int((t == 0).sum()) for t in tensors) / sum(t.numel() for t in tensors)


def prune_rows(tensors: Mapping[str, Tensor], figures: Callable[[], Mapping[str, float]], levels: Sequence[float],
               per_layer: bool = True, split: str = "test") -> list[dict[str, Any]]:
    """The figures of the model as it is, then at each level pruned globally over `tensors`
    (parameter name → the model's own tensor) and, with `per_layer`, each tensor alone.

    `figures()` evaluates the model on `split`. The tensors are zeroed in place and always
    put back as they were, even when an evaluation raises."""
    saved = {name: t.detach().clone() for name, t in tensors.items()}
    scopes: list[tuple[str, list[str]]] = [(PRUNE_GLOBAL, list(tensors))]
    if per_layer:
        scopes += [(layer_of(name), [name]) for name in tensors]
    trained = figures()  # one evaluation as it is: each scope's first row
    rows = []
    sizes = [t.numel() for t in tensors.values()]
    starts = dict(zip(tensors, [sum(sizes[:i]) for i in range(len(sizes))]))
    try:
        with torch.no_grad():
            order = magnitude_order(list(tensors.values()))
            for scope, names in scopes:
                chosen = [tensors[name] for name in names]
                total = sum(t.numel() for t in chosen)
                start = starts[names[0]]  # a scope's tensors follow one another
                ranks = ranks_within(order, start, total).split([t.numel() for t in chosen])
                rows.append(_row(scope, 0.0, chosen, trained, split))
                for level in levels:
                    count = round(level * total)
                    for t, rank in zip(chosen, ranks):
                        t.masked_fill_((rank < count).view_as(t), 0)
                    rows.append(_row(scope, level, chosen, figures(), split))
                    for name, t in zip(names, chosen):
                        t.copy_(saved[name])
    finally:
        with torch.no_grad():
            for name, t in tensors.items():
                t.copy_(saved[name])
    return rows


def _row(scope: str, level: float, tensors: Sequence[Tensor], figures: Mapping[str, float],
         split: str) -> dict[str, Any]:
    return {SCOPE: scope, LEVEL: level, PRUNE_SPARSITY: zero_fraction(tensors),
            **{split_figure(split, name): value for name, value in figures.items()}}
