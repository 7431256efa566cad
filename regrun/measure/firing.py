"""Units that fire in training: which units of each captured module were non-zero in a
step, the last step each fired in, and the fraction that fired in none of the last steps
(SAELens's dead features over its `dead_feature_window`).

A unit is an index of dim 1, as in the statistics. The figures come from the outputs the
step's capture took anyway, so they cost two kernels a module a step and no extra forward.
"""

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from regrun.layout import sparsity_column
from regrun.measure.evaluation import Targeted

# Steps without firing after which a unit counts as dead in training (SAELens's default
# dead_feature_window); the config's sparsity.dead_window sets it.
DEAD_WINDOW = 1000


def firing(activations: Mapping[str, Sequence[Tensor]]) -> dict[str, Tensor]:
    """Which units of each captured module were non-zero on any sample (and position) of
    the step, (units,) booleans. A pure function of the outputs, so that it also runs
    inside `vmap` for a fused group."""
    fired: dict[str, Tensor] = {}
    with torch.no_grad():  # two kernels a call, not counting the OR of a second one: it runs every step
        for name, outputs in activations.items():
            for out in outputs:
                now = out.ne(0).any(dim=(0, *range(2, out.ndim))) if out.ndim > 1 else out.ne(0).any(0, keepdim=True)
                fired[name] = now if name not in fired else fired[name] | now
    return fired


def note_fired(last_fired: dict[str, Tensor], fired: Mapping[str, Tensor], step: int) -> None:
    """Note `step` as the last step each unit that fired in it fired in, (members, units)."""
    for name, now in fired.items():
        if name not in last_fired:
            last_fired[name] = torch.zeros_like(now, dtype=torch.long)
        last_fired[name].masked_fill_(now, step)


def window_dead(targets: Sequence[Targeted], last_fired: Mapping[str, Tensor], step: int,
                window: int) -> dict[str, float]:
    """Per activation target, the fraction of its modules' units that fired on no training
    sample in the last `window` steps before global step `step`: none can be dead before
    `window` steps have passed."""
    figures = {}
    for t in targets:
        if t.on_activations and all(m in last_fired for m in t.modules):
            idle = torch.cat([step - last_fired[m] >= window for m in t.modules])
            figures[sparsity_column(t.name, "train_dead_frac")] = idle.float().mean().item()
    return figures
