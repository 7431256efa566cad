"""Pruning curves of a set of runs (their prune.json, written by `regrun prune` or
prune.at_end): the headline figure against the fraction of weights zeroed, smallest
magnitude first, without retraining.

Two panels: global pruning (one threshold over all the chosen weights), one curve per config
(the runs that differ only by seed together: mean with ± sample std bars over the seeds, at
the mean sparsity reached), dashed beside it the same pruned models once fine-tuned
(prune.finetune_epochs); and the sensitivity analysis (one layer pruned at a time), one
colour per config and one line style per layer. Their shared axis of a fraction says when it
is zoomed, as the trade-off plot's does. The points come from a pure function
(`pruning_curves`), so that they can be checked without looking at pixels.
"""

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regrun.analysis.plots import (
    DPI,
    MAX_LABELLED,
    completed,
    config_groups,
    figure_name,
    figure_names,
    sweep_title,
    zoom_note,
)
from regrun.analysis.runs import Run, is_finite
from regrun.errors import RegrunError
from regrun.layout import FINETUNE_EPOCHS, LEVEL, PRUNE_GLOBAL, PRUNE_SPARSITY, SCOPE, finetuned

LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


@dataclass
class Curve:
    """One config's figure against the sparsity reached, pruned in one scope, level by level."""

    label: str  # the config's ('λ=0.001')
    scope: str  # `global`, or the layer pruned alone
    sparsity: list[float]  # per level: the mean over the runs of the fraction of the scope that is zero
    values: list[float]  # per level: the mean figure over the runs
    stds: list[float | None]  # per level: the sample std over the runs (None for one run)


def pruned_runs(runs: Sequence[Run]) -> list[Run]:
    """The completed runs that have pruning rows: the ones drawn."""
    return [run for run in completed(runs) if run.pruning]


def pruning_curves(runs: Sequence[Run], figure: str, config_keys: Sequence[str] = ()) -> list[Curve]:
    """Per config and scope (global first, then the layers in their order), `figure` at each
    level that every run of the config evaluated; levels a run lacks are left out."""
    curves = []
    for label, group in config_groups(pruned_runs(runs), config_keys).items():
        group = [run for run in group if run.pruning]
        if not group:
            continue
        scopes = dict.fromkeys(row[SCOPE] for run in group for row in run.pruning)
        for scope in sorted(scopes, key=lambda s: s != PRUNE_GLOBAL):
            by_level: dict[float, list[tuple[float, float]]] = {}
            for run in group:
                for row in run.pruning:
                    if row[SCOPE] == scope and is_finite(row.get(figure)):
                        by_level.setdefault(row[LEVEL], []).append((row[PRUNE_SPARSITY], row[figure]))
            levels = [level for level in sorted(by_level) if len(by_level[level]) == len(group)]
            if levels:
                points = [by_level[level] for level in levels]
                curves.append(Curve(label, scope, [statistics.fmean(s for s, _ in p) for p in points],
                                    [statistics.fmean(v for _, v in p) for p in points],
                                    [statistics.stdev(v for _, v in p) if len(p) > 1 else None for p in points]))
    return curves


def plot_pruning(runs: Sequence[Run], out: Path, figure: str, config_keys: Sequence[str] = ()) -> None:
    """Draw the runs' pruning curves of `figure` (`draw_pruning`) into a PNG, PDF or SVG."""
    fig = draw_pruning(runs, figure, config_keys)
    try:
        fig.savefig(out, dpi=DPI)
    except (OSError, ValueError) as err:
        raise RegrunError(f"plot {out}: cannot write it ({getattr(err, 'strerror', None) or err})") from err


def draw_pruning(runs: Sequence[Run], figure: str, config_keys: Sequence[str] = ()) -> Any:
    """The pruning curves in one figure: globally, and each layer alone."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    drawn = pruned_runs(runs)
    if not drawn:
        raise RegrunError("no completed run with pruning rows to plot (run `regrun prune` first)")
    curves = pruning_curves(drawn, figure, config_keys)
    labels = list(dict.fromkeys(curve.label for curve in curves))
    cmap = colormaps["viridis"]
    colors = {label: cmap(0.85 * i / max(len(labels) - 1, 1)) for i, label in enumerate(labels)}
    name = figure_name(figure, figure_names(drawn))
    fig = Figure(figsize=(14, 6), dpi=DPI)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.1, top=0.85, wspace=0.18)
    whole, layers = fig.subplots(1, 2, sharey=True)
    tuned = [c for c in pruning_curves(drawn, finetuned(figure), config_keys) if c.scope == PRUNE_GLOBAL]
    _draw_global(whole, [c for c in curves if c.scope == PRUNE_GLOBAL], tuned, colors, name, _epochs(drawn))
    _draw_layers(layers, [c for c in curves if c.scope != PRUNE_GLOBAL], colors, name)
    zoom_note(whole, figure)  # the panels share their y-axis, labelled on the left
    groups = config_groups(drawn, config_keys)
    after = f" (dashed: then fine-tuned {_epochs(drawn)}, the zeroed weights held at 0)" if tuned else ""
    fig.suptitle(f"{name} with the smallest-magnitude weights zeroed, no retraining{after}\n"
                 f"{sweep_title(drawn, config_keys, list(groups.values()))}", fontsize="large")
    return fig


def _axes(ax: Any, title: str, name: str) -> None:
    ax.set(title=title, xlabel="fraction of the pruned weights that is zero", ylabel=name, xlim=(-0.02, 1.02))
    ax.grid(alpha=0.3)


def _errorbars(ax: Any, curve: Curve, **style: Any) -> None:
    seeded = any(sd is not None for sd in curve.stds)
    ax.errorbar(curve.sparsity, curve.values, yerr=[sd or 0.0 for sd in curve.stds] if seeded else None,
                capsize=3, ms=5, **style)


def _epochs(runs: Sequence[Run]) -> str:
    """How long the pruned models were fine-tuned, for the legend: '2 epochs', or 'epochs' when runs differ."""
    epochs = {row[FINETUNE_EPOCHS] for run in runs for row in run.pruning if FINETUNE_EPOCHS in row}
    if len(epochs) != 1:
        return "epochs"
    count = epochs.pop()
    return f"{count} epoch{'s' * (count != 1)}"


def _draw_global(ax: Any, curves: Sequence[Curve], tuned: Sequence[Curve], colors: Mapping[str, Any], name: str,
                 epochs: str) -> None:
    _axes(ax, "global: one magnitude threshold over all the chosen weights", name)
    for curve in curves:
        _errorbars(ax, curve, fmt="-o", color=colors[curve.label], label=curve.label or "the run")
    for curve in tuned:  # the same pruned models trained further, their pruned weights held at zero
        _errorbars(ax, curve, fmt="--s", color=colors[curve.label], mfc="none",
                   label=f"{curve.label or 'the run'}, then fine-tuned {epochs}")
    if any(sd is not None for c in curves for sd in c.stds):
        ax.errorbar([], [], yerr=[], fmt="o", color="gray", capsize=3, label="mean ± sample std over seeds")
    if len(curves) <= MAX_LABELLED:
        ax.legend(fontsize="small", loc="lower left")


def _draw_layers(ax: Any, curves: Sequence[Curve], colors: Mapping[str, Any], name: str) -> None:
    _axes(ax, "each layer alone (the others as trained): sensitivity", name)
    if not curves:
        ax.text(0.5, 0.5, "no per-layer rows", ha="center", va="center", transform=ax.transAxes, color="gray")
        return
    scopes = list(dict.fromkeys(curve.scope for curve in curves))
    for curve in curves:
        i = scopes.index(curve.scope)
        _errorbars(ax, curve, color=colors[curve.label], ls=LINE_STYLES[i % len(LINE_STYLES)],
                   marker=MARKERS[i % len(MARKERS)])
    # The legend names the layers by style, and the configs by colour, once each.
    for i, scope in enumerate(scopes):
        ax.plot([], [], color="black", ls=LINE_STYLES[i % len(LINE_STYLES)], marker=MARKERS[i % len(MARKERS)],
                label=scope)
    labels = list(dict.fromkeys(curve.label for curve in curves))
    if len(labels) > 1 and len(labels) <= MAX_LABELLED:
        for label in labels:
            ax.plot([], [], color=colors[label], lw=6, label=label)
    ax.legend(fontsize="small", loc="lower left", ncols=2)
