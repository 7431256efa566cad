"""Plots of a set of runs, in one PNG: the trade-off between the task's headline figure
(accuracy, R², PSNR, as the runs' summary.json names it) and sparsity with its Pareto
front, both against λ, and training curves per epoch.

Only completed runs are drawn. The data of each panel comes from a pure function
(`tradeoff_points`, `lambda_series`) so that it can be checked without looking at pixels;
matplotlib is imported only when a figure is drawn, through its object API with the Agg
canvas (no display, no pyplot state).
"""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regrun.analysis.runs import LAMBDA_KEY, Run, config_values, is_finite, short_names
from regrun.console import format_value
from regrun.errors import RegrunError
from regrun.layout import SEED, TASK_LOSS, split_figure

FIGURE_NAMES = {TASK_LOSS: "task loss (train)"}  # the task's figures are named by the runs' summary.json
MAX_LABELLED = 12  # more runs than this: no per-run labels or legend, they would cover the data


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points when both coordinates are maximized, by x
    (negate y first for a figure where lower is better).

    A point is dominated when another is at least as large in both and larger in one;
    equal points do not dominate each other, so duplicates of a front point are kept.
    """
    front: list[int] = []
    best_y = -math.inf
    # From the largest x down: a point is on the front when it beats the y of every point
    # with a larger (or equal) x seen before it.
    for i in sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1])):
        if points[i][1] > best_y or (front and points[i] == points[front[-1]]):
            front.append(i)
            best_y = max(best_y, points[i][1])
    return sorted(front, key=lambda i: (points[i][0], i))


@dataclass
class Point:
    """One completed run in the trade-off plot."""

    run: Run
    label: str
    x: float
    y: float


def completed(runs: Sequence[Run]) -> list[Run]:
    """The runs that finished: the only ones plotted."""
    return [run for run in runs if run.completed]


def plottable_columns(runs: Sequence[Run]) -> list[str]:
    """The final figures that are numbers in some completed run: what --x and --y may name."""
    return list(dict.fromkeys(key for run in completed(runs) for key, value in run.final.items() if is_finite(value)))


def default_x(runs: Sequence[Run]) -> str:
    """The first target's zero fraction when every completed run has the same targets,
    else the zero fraction of all weights."""
    names = {tuple(run.target_names) for run in completed(runs)}
    if len(names) == 1 and (targets := names.pop()):
        return f"sparsity.{targets[0]}.zero_frac"
    return "sparsity.weights.zero_frac"


def default_y(runs: Sequence[Run]) -> str:
    """The completed runs' headline figure (test_acc, test_r2, ...) when they share one, else test_loss."""
    headlines = {run.headline for run in completed(runs)} - {None}
    return headlines.pop() if len(headlines) == 1 else split_figure("test", "loss")


def higher_is_better(runs: Sequence[Run], column: str) -> bool:
    """Whether larger is better for `column`: as the runs' task says of its headline
    figure; for a loss, no; for anything else (sparsity, accuracy), yes."""
    for run in completed(runs):
        if run.headline == column and isinstance(run.task.get("higher_is_better"), bool):
            return run.task["higher_is_better"]
    return "loss" not in column


def figure_names(runs: Sequence[Run]) -> dict[str, str]:
    """Axis labels of the columns the runs' tasks name: 'test_r2' → 'test R²'."""
    names = dict(FIGURE_NAMES)
    for run in runs:
        labels = run.task.get("figures")
        for figure, label in (labels.items() if isinstance(labels, dict) else ()):
            names |= {split_figure(split, figure): f"{split} {label}" for split in ("test", "val")}
    return names


def plot_labels(runs: Sequence[Run], config_keys: Sequence[str]) -> dict[Path, str]:
    """Each run named by its values of the differing config keys ('λ=0.001, seed=1').

    The λ of a target is called λ when it is the only λ that differs.
    """
    short = short_names(config_keys)
    lambdas = [key for key in config_keys if LAMBDA_KEY.fullmatch(key)]
    if len(lambdas) == 1:
        short[lambdas[0]] = "λ"
    labels = {}
    for run in runs:
        values = config_values(run, config_keys)
        labels[run.path] = ", ".join(f"{short[k]}={format_value(v)}" for k, v in values.items()) or run.path.name
    return labels


def tradeoff_points(runs: Sequence[Run], x: str, y: str, labels: dict[Path, str]) -> tuple[list[Point], list[int]]:
    """The completed runs with finite x and y, and the indices of the Pareto front among them
    (sparsity up, y up or down as is better for it)."""
    points = [Point(run, labels[run.path], run.final[x], run.final[y]) for run in completed(runs)
              if is_finite(run.final.get(x)) and is_finite(run.final.get(y))]
    sign = 1 if higher_is_better(runs, y) else -1
    return points, pareto_front([(p.x, sign * p.y) for p in points])


def lambda_key(config_keys: Sequence[str]) -> str | None:
    """The first differing config key that is a target's λ, if any."""
    return next((key for key in config_keys if LAMBDA_KEY.fullmatch(key)), None)


@dataclass
class Series:
    """A figure against λ for the runs that share every other differing config value."""

    label: str
    lambdas: list[float]
    values: list[list[float]]  # per λ, one value per run (several seeds give several)

    @property
    def means(self) -> list[float]:
        """The mean over the runs at each λ."""
        return [sum(v) / len(v) for v in self.values]


def lambda_series(runs: Sequence[Run], lam_key: str, column: str, config_keys: Sequence[str]) -> list[Series]:
    """`column` against λ, one series per combination of the other differing keys (not the seed)."""
    others = [key for key in config_keys if key not in (lam_key, SEED)]
    short = short_names(others)
    groups: dict[str, dict[float, list[float]]] = {}
    for run in completed(runs):
        values = config_values(run, [lam_key, *others])
        lam, figure = values.pop(lam_key), run.final.get(column)
        if is_finite(lam) and is_finite(figure):
            label = ", ".join(f"{short[k]}={format_value(v)}" for k, v in values.items())
            groups.setdefault(label, {}).setdefault(float(lam), []).append(figure)
    return [Series(label, sorted(by_lam), [by_lam[lam] for lam in sorted(by_lam)]) for label, by_lam in groups.items()]


def figure_name(column: str, names: Mapping[str, str] = FIGURE_NAMES) -> str:
    """An axis label for a metrics column: 'sparsity.act1.zero_frac' → 'act1 zero fraction'."""
    if column in names:
        return names[column]
    if match := re.fullmatch(r"sparsity\.(.+)\.zero_frac", column):
        return f"{match[1]}: zero fraction"
    return column


def plot_runs(runs: Sequence[Run], out: Path, x: str, y: str | None = None, config_keys: Sequence[str] = ()) -> None:
    """Draw the completed runs into one PNG: trade-off, figures against λ (when λ differs),
    training curves; `config_keys` (the differing ones) name the runs; y by default the
    runs' headline figure."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    runs = completed(runs)
    if not runs:
        raise RegrunError("no completed run to plot")
    labels = plot_labels(runs, config_keys)
    y = y or default_y(runs)
    names = figure_names(runs)
    lam = lambda_key(config_keys)
    width = 17 if lam else 12
    fig = Figure(figsize=(width, 9.5))
    # Margins in inches, set once: a layout engine would draw the figure twice, doubling the time.
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.25 / width, bottom=0.065, top=0.92, wspace=0.22, hspace=0.3)
    axes = iter(fig.subplots(2, 3 if lam else 2).flat)
    cmap = colormaps["viridis"]
    colors = {run.path: cmap(0.85 * i / max(len(runs) - 1, 1)) for i, run in enumerate(runs)}

    _draw_tradeoff(next(axes), *tradeoff_points(runs, x, y, labels), x, y, colors, names)
    if lam:
        for column in (y, x):
            _draw_against_lambda(next(axes), lambda_series(runs, lam, column, config_keys), lam, column, names)
    for column in (y, TASK_LOSS, x):
        _draw_curves(next(axes), runs, column, colors, labels, names)
    fig.suptitle(f"{len(runs)} completed runs", fontsize="x-large")
    try:
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as err:  # a missing folder, or an extension matplotlib cannot write
        raise RegrunError(f"plot {out}: cannot write it ({getattr(err, 'strerror', None) or err})") from err


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="gray")


def _draw_tradeoff(ax: Any, points: list[Point], front: list[int], x: str, y: str, colors: dict,
                   names: Mapping[str, str]) -> None:
    ax.set(title=f"{figure_name(y, names)} vs {figure_name(x, names)}", xlabel=figure_name(x, names),
           ylabel=figure_name(y, names))
    ax.grid(alpha=0.3)
    ax.margins(x=0.1)  # room for the labels of the points at the edges
    if not points:
        _no_data(ax, f"run with both {x} and {y}")
        return
    ax.scatter([p.x for p in points], [p.y for p in points], c=[colors[p.run.path] for p in points], s=40, zorder=3)
    ax.plot([points[i].x for i in front], [points[i].y for i in front], "-o", color="crimson", mfc="none",
            ms=12, lw=1.2, zorder=2, label=f"Pareto front (best {figure_name(y, names)} for its sparsity)")
    if len(points) <= MAX_LABELLED:
        for p in points:
            ax.annotate(p.label, (p.x, p.y), textcoords="offset points", xytext=(6, 4), fontsize="x-small")
    ax.legend(loc="best", fontsize="small")


def _draw_against_lambda(ax: Any, series: list[Series], lam_key: str, column: str, names: Mapping[str, str]) -> None:
    ax.set(title=f"{figure_name(column, names)} vs λ", xlabel=f"λ ({lam_key})", ylabel=figure_name(column, names))
    ax.grid(alpha=0.3, which="both")
    lambdas = [lam for s in series for lam in s.lambdas]
    if not lambdas:
        _no_data(ax, "run with λ")
        return
    positive = [lam for lam in lambdas if lam > 0]
    if positive and 0 in lambdas:  # λ = 0 is common: symlog keeps it on the axis, linear up to the smallest λ > 0
        ax.set_xscale("symlog", linthresh=min(positive), linscale=0.5)
    elif positive:
        ax.set_xscale("log")
    for s in series:
        line, = ax.plot(s.lambdas, s.means, "-o", label=s.label or "mean over runs")
        for lam, values in zip(s.lambdas, s.values):
            if len(values) > 1:  # several seeds: each run as a dot around the mean
                ax.plot([lam] * len(values), values, ".", color=line.get_color(), alpha=0.5)
    if len(series) > 1 or series[0].label:
        ax.legend(fontsize="small")


def _draw_curves(ax: Any, runs: Sequence[Run], column: str, colors: dict, labels: dict[Path, str],
                 names: Mapping[str, str]) -> None:
    ax.set(title=f"{figure_name(column, names)} per epoch", xlabel="epoch", ylabel=figure_name(column, names))
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    drawn = 0
    for run in runs:
        pairs = [(row["epoch"], row[column]) for row in run.metrics
                 if is_finite(row.get("epoch")) and is_finite(row.get(column))]
        if pairs:
            epochs, values = zip(*pairs)
            ax.plot(epochs, values, "-o", ms=3, color=colors[run.path], label=labels[run.path])
            drawn += 1
    if not drawn:
        _no_data(ax, f"{column} in metrics.csv")
    elif drawn <= MAX_LABELLED:
        ax.legend(fontsize="x-small")
