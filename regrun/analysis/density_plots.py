"""Firing-density histograms of a set of runs: for each module an activation target
penalizes (a sparse code), how many of its units fire how often on the test set, the
fraction of a unit's entries that are non-zero (SAELens's feature density), on a log scale.

One panel per module, one step histogram per config (the runs that differ only by seed
together: the mean count per run in each bin); units that never fire (dead on the test
set) have a bar of their own left of the log axis, which cannot show a density of 0. The
counts come from a pure function (`density_histograms`), so that they can be checked
without looking at pixels.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regrun.analysis.plots import DPI, MAX_LABELLED, completed, config_groups, sweep_title
from regrun.analysis.runs import Run
from regrun.errors import RegrunError

BINS_PER_DECADE = 4
DEAD_GAP = 0.5  # the dead units' bar stands this far (in decades) left of the first bin


@dataclass
class DensityHistogram:
    """One config's units of one module by log10 firing density, averaged over its runs."""

    label: str  # the config's ('λ=0.001')
    module: str
    runs: int  # how many runs the counts are the mean over
    units: int  # units per run
    dead: float  # units that never fired, per run
    counts: list[float]  # per bin of `edges`, units per run


def density_runs(runs: Sequence[Run]) -> list[Run]:
    """The completed runs with firing densities (a targeted activation module): the ones drawn."""
    return [run for run in completed(runs) if run.densities]


def log_edges(runs: Sequence[Run]) -> list[float]:
    """Bin edges in log10 density shared by every panel: from the decade of the smallest
    non-zero density of any run to 10⁰ = 1, `BINS_PER_DECADE` bins a decade."""
    smallest = min((d for run in runs for ds in run.densities.values() for d in ds if d > 0), default=1.0)
    low = min(math.floor(math.log10(smallest)), -1)
    return [low + i / BINS_PER_DECADE for i in range(-low * BINS_PER_DECADE + 1)]


def density_histograms(runs: Sequence[Run], config_keys: Sequence[str] = ()) -> tuple[list[DensityHistogram],
                                                                                       list[float]]:
    """Per config and module (in the runs' order), the mean count per run of dead units and of
    units in each bin of the shared log10 edges (a density on an edge falls in the bin above
    it; 1 in the last); and the edges."""
    drawn = density_runs(runs)
    edges = log_edges(drawn)
    histograms = []
    for label, group in config_groups(drawn, config_keys).items():
        modules = dict.fromkeys(m for run in group for m in run.densities)
        for module in modules:
            having = [run.densities[module] for run in group if module in run.densities]
            counts = [0.0] * (len(edges) - 1)
            dead = 0
            for densities in having:
                for d in densities:
                    if d == 0:
                        dead += 1
                    else:
                        counts[_bin(math.log10(d), edges)] += 1
            n = len(having)
            histograms.append(DensityHistogram(label, module, n, len(having[0]), dead / n, [c / n for c in counts]))
    return histograms, edges


def _bin(value: float, edges: Sequence[float]) -> int:
    """The bin of `value`: edges[i] ≤ value < edges[i + 1]; the last bin holds its right edge."""
    step = edges[1] - edges[0]
    return min(max(int((value - edges[0]) / step + 1e-9), 0), len(edges) - 2)


def plot_densities(runs: Sequence[Run], out: Path, config_keys: Sequence[str] = ()) -> None:
    """Draw the runs' firing-density histograms (`draw_densities`) into a PNG, PDF or SVG."""
    fig = draw_densities(runs, config_keys)
    try:
        fig.savefig(out, dpi=DPI)
    except (OSError, ValueError) as err:
        raise RegrunError(f"plot {out}: cannot write it ({getattr(err, 'strerror', None) or err})") from err


def draw_densities(runs: Sequence[Run], config_keys: Sequence[str] = ()) -> Any:
    """The histograms in one figure: a panel per targeted module, a colour per config."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    drawn = density_runs(runs)
    if not drawn:
        raise RegrunError("no completed run with firing densities to plot (an activation target's modules have them)")
    histograms, edges = density_histograms(drawn, config_keys)
    modules = list(dict.fromkeys(h.module for h in histograms))
    labels = list(dict.fromkeys(h.label for h in histograms))
    cmap = colormaps["viridis"]
    colors = {label: cmap(0.85 * i / max(len(labels) - 1, 1)) for i, label in enumerate(labels)}
    width = max(7 * len(modules), 10)
    fig = Figure(figsize=(width, 5.5), dpi=DPI)
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.2 / width, bottom=0.14, top=0.78, wspace=0.2)
    axes = fig.subplots(1, len(modules), squeeze=False)[0]
    for ax, module in zip(axes, modules):
        _draw_module(ax, [h for h in histograms if h.module == module], edges, colors)
    groups = config_groups(drawn, config_keys)
    fig.suptitle("firing density of the targeted units on the test set: the fraction of a unit's entries that "
                 f"are non-zero\n{sweep_title(drawn, config_keys, list(groups.values()), drawn='mean count')}",
                 fontsize="large")
    return fig


def _draw_module(ax: Any, histograms: Sequence[DensityHistogram], edges: Sequence[float],
                 colors: Mapping[str, Any]) -> None:
    dead_at = edges[0] - DEAD_GAP - 1 / BINS_PER_DECADE
    seeded = any(h.runs > 1 for h in histograms)
    for i, h in enumerate(histograms):
        color = colors[h.label]
        lw = 3.0 - 1.8 * i / max(len(histograms) - 1, 1)  # the first drawn widest: equal counts hide no config
        ax.stairs(h.counts, edges, color=color, lw=lw, label=h.label or "the run")
        ax.stairs([h.dead], [dead_at, dead_at + 1 / BINS_PER_DECADE], color=color, lw=lw, fill=False, hatch="//")
    decades = range(math.ceil(edges[0]), 1)
    ax.set_xticks([dead_at + 0.5 / BINS_PER_DECADE, *decades],
                  ["never\n(dead)", *(f"$10^{{{d}}}$" for d in decades)])
    ax.axvline(edges[0] - DEAD_GAP / 2, color="gray", lw=0.8, ls=":")  # the dead bar is off the log axis
    units = histograms[0].units
    ax.set(title=f"{histograms[0].module}: {units} units", xlabel="firing density (log scale)",
           ylabel="units" + (" (mean per run over its seeds)" if seeded else ""))
    ax.grid(alpha=0.3)
    if len(histograms) <= MAX_LABELLED and (len(histograms) > 1 or histograms[0].label):
        ax.legend(fontsize="small", loc="upper left")
