"""Plots of a set of runs, in one figure (PNG, PDF or SVG): the trade-off between the task's
headline figure (accuracy, R², PSNR, as the runs' summary.json names it) and sparsity with
its Pareto front, both against λ, and training curves per epoch.

Runs that differ only by seed are one config: drawn as the mean over its seeds with ± sample
std bars (bands on the curves), the Pareto front taken over the means. Labels are placed
where they hide no other label, point or legend, and a legend sits in a band below the
data; the λ = 0 config is a dashed baseline; an axis of a fraction that shows less than
half of 0–1 says it is zoomed (the per-epoch curves' too); the title says what varies.

Only completed runs are drawn. The data of each panel comes from a pure function
(`tradeoff_points`, `lambda_series`, `place_labels`) so that it can be checked without
looking at pixels; matplotlib is imported only when a figure is drawn, through its object
API with the Agg canvas (no display, no pyplot state).
"""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regrun.analysis.compare import is_fraction
from regrun.analysis.runs import LAMBDA_KEY, Run, config_values, is_finite, short_names
from regrun.console import format_value
from regrun.errors import RegrunError
from regrun.layout import EPOCH, METRICS, SEED, SPARSITY, TASK_LOSS, sparsity_column, split_figure

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
    """One config in the trade-off plot: its runs (several seeds, or one), their mean figures
    and, over several seeds, the sample standard deviations."""

    runs: list[Run]
    label: str
    x: float
    y: float
    x_std: float | None = None
    y_std: float | None = None

    @property
    def run(self) -> Run:
        """The config's first run (the one whose color it takes)."""
        return self.runs[0]


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
        return sparsity_column(targets[0], "zero_frac")
    return sparsity_column("weights", "zero_frac")


def default_y(runs: Sequence[Run]) -> str:
    """The completed runs' headline figure (test_acc, test_r2, ...) when they share one, else test_loss."""
    headlines = {run.headline for run in completed(runs) if run.headline is not None}
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


def tradeoff_points(runs: Sequence[Run], x: str, y: str, config_keys: Sequence[str] = ()
                    ) -> tuple[list[Point], list[int]]:
    """One point per config of the completed runs with finite x and y: the mean over the runs
    that differ only by seed, with their sample std when there are several; and the indices
    of the Pareto front among the means (sparsity up, y up or down as is better for it)."""
    points = []
    for label, everyone in config_groups(runs, config_keys).items():
        group = [run for run in everyone if is_finite(run.final.get(x)) and is_finite(run.final.get(y))]
        if not group:
            continue
        (mx, sx), (my, sy) = _mean_std([r.final[x] for r in group]), _mean_std([r.final[y] for r in group])
        points.append(Point(group, label, mx, my, sx, sy))
    sign = 1 if higher_is_better(runs, y) else -1
    return points, pareto_front([(p.x, sign * p.y) for p in points])


def config_groups(runs: Sequence[Run], config_keys: Sequence[str]) -> dict[str, list[Run]]:
    """The completed runs by config: those that differ only by seed together, under the label
    of their other differing values ('λ=0.001'), in the runs' order."""
    labels = plot_labels(runs, [key for key in config_keys if key != SEED])
    groups: dict[str, list[Run]] = {}
    for run in completed(runs):
        groups.setdefault(labels[run.path], []).append(run)
    return groups


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, sample std) of the values; the std is None for one value."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


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
    if match := re.fullmatch(rf"{re.escape(SPARSITY)}(.+)\.zero_frac", column):
        return f"{match[1]}: zero fraction"
    return column


def plot_runs(runs: Sequence[Run], out: Path, x: str, y: str | None = None, config_keys: Sequence[str] = ()) -> None:
    """Draw the completed runs (`draw_runs`) into a PNG, PDF or SVG, as `out`'s extension says."""
    fig = draw_runs(runs, x, y, config_keys)
    try:
        fig.savefig(out, dpi=DPI)
    except (OSError, ValueError) as err:  # a missing folder, or an extension matplotlib cannot write
        raise RegrunError(f"plot {out}: cannot write it ({getattr(err, 'strerror', None) or err})") from err


DPI = 110  # the figure's and the file's: label offsets are placed in its pixels


def draw_runs(runs: Sequence[Run], x: str, y: str | None = None, config_keys: Sequence[str] = ()) -> Any:
    """The completed runs in one figure: the trade-off (one point per config, the mean over
    its seeds with ± std bars, the Pareto front over the means), the figures against λ (when
    λ differs), training curves; `config_keys` (the differing ones) name the configs and the
    title says what varies; y by default the runs' headline figure."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = completed(runs)
    if not runs:
        raise RegrunError("no completed run to plot")
    y = y or default_y(runs)
    names = figure_names(runs)
    lam = lambda_key(config_keys)
    width = 17 if lam else 12
    fig = Figure(figsize=(width, 9.5), dpi=DPI)
    FigureCanvasAgg(fig)  # its renderer measures the labels that are placed
    # Margins in inches, set once: a layout engine would draw the figure twice, doubling the time.
    fig.subplots_adjust(left=1.0 / width, right=1 - 0.25 / width, bottom=0.065, top=0.9, wspace=0.22, hspace=0.34)
    axes = iter(fig.subplots(2, 3 if lam else 2).flat)
    cmap = colormaps["viridis"]
    groups = config_groups(runs, config_keys)
    colors = {label: cmap(0.85 * i / max(len(groups) - 1, 1)) for i, label in enumerate(groups)}

    points, front = tradeoff_points(runs, x, y, config_keys)
    baseline = _baseline(points, lam)
    _draw_tradeoff(next(axes), points, front, x, y, colors, names, baseline)
    if lam:
        for column in (y, x):
            _draw_against_lambda(next(axes), lambda_series(runs, lam, column, config_keys), lam, column, names,
                                 baseline if column == y else None)
    for column in (y, TASK_LOSS, x):
        _draw_curves(next(axes), groups, column, colors, names)
    fig.suptitle(sweep_title(runs, config_keys, [p.runs for p in points]), fontsize="x-large")
    return fig


def sweep_title(runs: Sequence[Run], config_keys: Sequence[str], configs: Sequence[Sequence[Run]],
                drawn: str = "mean ± std") -> str:
    """What varies between the runs, and over how many (`configs`: the runs of each config
    drawn, as `drawn` says): 'λ ∈ {0, 0.001, 0.01} × seed ∈ {0, 1, 2}: 9 completed runs, 3
    configs (mean ± std over 3 seeds)'."""
    short = short_names(config_keys)
    if (lam := lambda_key(config_keys)) and [k for k in config_keys if LAMBDA_KEY.fullmatch(k)] == [lam]:
        short[lam] = "λ"
    parts = []
    ordered = sorted(config_keys, key=lambda k: (not LAMBDA_KEY.fullmatch(k), k == SEED))  # λ first, the seed last
    for key in ordered:
        values = sorted({format_value(v) for v in config_values_of(runs, key)}, key=_natural)
        listed = "{" + ", ".join(values) + "}" if len(values) <= 6 else f"{len(values)} values"
        parts.append(f"{short[key]} ∈ {listed}")
    seeds = max((len(group) for group in configs), default=1)
    over = f" ({drawn} over {seeds} seeds)" if seeds > 1 else ""
    varies = " × ".join(parts) + ": " if parts else ""
    return f"{varies}{len(runs)} completed runs, {len(configs)} configs{over}" if len(configs) != len(runs) else \
        f"{varies}{len(runs)} completed runs"


def config_values_of(runs: Sequence[Run], key: str) -> list[Any]:
    """Each run's value of one config key (MISSING where it has none)."""
    return [config_values(run, [key])[key] for run in runs]


def _natural(text: str) -> tuple[int, float | str]:
    try:
        return 0, float(text)
    except ValueError:
        return 1, text


def _baseline(points: Sequence[Point], lam: str | None) -> Point | None:
    """The config without the penalty (λ = 0), when there is exactly one: the reference line."""
    if lam is None:
        return None
    zero = [p for p in points if config_values(p.run, [lam])[lam] == 0]
    return zero[0] if len(zero) == 1 else None


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="gray")


Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 gap: float = 4.0, marker: float = 16.0, obstacles: Sequence[Box] = ()) -> list[tuple[float, float]]:
    """Offsets (in pixels, from each anchor to its label's lower-left corner) that keep the
    labels off each other, off every point and off the `obstacles` (the legend's box):
    around its anchor, nearest first, each label takes the first place that overlaps
    nothing placed before it."""
    def box(cx: float, cy: float, w: float, h: float) -> Box:
        return cx, cy, cx + w, cy + h

    def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    taken = [box(ax - marker / 2, ay - marker / 2, marker, marker) for ax, ay in anchors] + list(obstacles)
    offsets = []
    for (ax, ay), (w, h) in zip(anchors, sizes):
        candidates = [(dx, dy) for ring in range(12) for dx, dy in
                      ((gap, gap + ring * h), (gap, -h - gap - ring * h), (-w - gap, gap + ring * h),
                       (-w - gap, -h - gap - ring * h))]
        chosen = next((c for c in candidates if not any(overlaps(box(ax + c[0], ay + c[1], w, h), t) for t in taken)),
                      candidates[-1])
        taken.append(box(ax + chosen[0], ay + chosen[1], w, h))
        offsets.append(chosen)
    return offsets


def _label_points(ax: Any, points: Sequence[Point], legend: Any) -> None:
    """Annotate each point with its config's label where no label, point or the legend hides another."""
    renderer = ax.figure.canvas.get_renderer()
    ax.get_xlim(), ax.get_ylim()  # the limits autoscaled now: the points' pixels are final
    texts = [ax.annotate(p.label, (p.x, p.y), textcoords="offset pixels", xytext=(0, 0), fontsize="x-small")
             for p in points]
    anchors = [tuple(ax.transData.transform((p.x, p.y))) for p in points]
    sizes = [(t.get_window_extent(renderer).width, t.get_window_extent(renderer).height) for t in texts]
    box = legend.get_window_extent(renderer)
    for text, offset in zip(texts, place_labels(anchors, sizes, obstacles=[(box.x0, box.y0, box.x1, box.y1)])):
        text.set_position(offset)


LEGEND_PAD = 6.0  # pixels between the legend's band and the lowest data


def legend_below_data(ax: Any, **options: Any) -> Any:
    """The axes' legend in a band of its own at the bottom: the y-axis is extended downward
    until the legend lies below everything drawn (points, error bars, lines, bands), so that
    it hides none of it (loc='best' weighs an error bar by its centre only and covers bars)."""
    legend = ax.legend(loc="lower left", **options)
    renderer = ax.figure.canvas.get_renderer()
    lo, hi = ax.get_ylim()
    share = (legend.get_window_extent(renderer).y1 - ax.get_window_extent(renderer).y0 + LEGEND_PAD) / \
        ax.get_window_extent(renderer).height
    bottom = ax.dataLim.y0
    if 0 < share < 0.8 and math.isfinite(bottom) and bottom >= lo:  # a legend taller than the axes stays as it is
        ax.set_ylim(min(lo, (bottom - share * hi) / (1 - share)), hi)
    return legend


def zoom_note(ax: Any, column: str) -> None:
    """Say so in the axis label when a fraction's axis shows less than half of 0–1: a small
    difference then looks large."""
    lo, hi = ax.get_ylim()
    if is_fraction(column) and hi - lo < 0.5:
        ax.set_ylabel(f"{ax.get_ylabel()}\n(axis zoomed to {lo:.3g}–{hi:.3g} of 0–1)")


def _draw_tradeoff(ax: Any, points: list[Point], front: list[int], x: str, y: str, colors: dict,
                   names: Mapping[str, str], baseline: Point | None) -> None:
    ax.set(title=f"{figure_name(y, names)} vs {figure_name(x, names)}", xlabel=figure_name(x, names),
           ylabel=figure_name(y, names))
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)  # room for the labels of the points at the edges
    if not points:
        _no_data(ax, f"run with both {x} and {y}")
        return
    seeded = any(p.x_std is not None or p.y_std is not None for p in points)
    for p in points:
        ax.errorbar(p.x, p.y, xerr=p.x_std, yerr=p.y_std, fmt="o", color=colors[p.label], ms=6, capsize=3,
                    elinewidth=1, zorder=3)
    if seeded:  # one proxy artist says what the bars are
        ax.errorbar([], [], xerr=[], yerr=[], fmt="o", color="gray", capsize=3,
                    label=f"mean ± sample std over {max(len(p.runs) for p in points)} seeds")
    ax.plot([points[i].x for i in front], [points[i].y for i in front], "-o", color="crimson", mfc="none",
            ms=13, lw=1.2, zorder=2, label=f"Pareto front of the {'means' if seeded else 'runs'} "
                                         f"(best {figure_name(y, names)} for its sparsity)")
    if baseline is not None:
        ax.axhline(baseline.y, color="gray", ls="--", lw=1, zorder=1,
                   label=f"baseline {baseline.label}: {format_value(baseline.y)}")
    legend = legend_below_data(ax, fontsize="small")
    if len(points) <= MAX_LABELLED:
        _label_points(ax, points, legend)
    zoom_note(ax, y)


def _draw_against_lambda(ax: Any, series: list[Series], lam_key: str, column: str, names: Mapping[str, str],
                         baseline: Point | None) -> None:
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
    seeded = any(len(v) > 1 for s in series for v in s.values)
    for s in series:
        stds = [_mean_std(v)[1] or 0.0 for v in s.values]
        ax.errorbar(s.lambdas, s.means, yerr=stds if seeded else None, fmt="-o", capsize=3,
                    label=(s.label or "mean over runs") + (" (± sample std over seeds)" if seeded else ""))
    if baseline is not None:
        ax.axhline(baseline.y, color="gray", ls="--", lw=1, label=f"baseline {baseline.label}")
    if len(series) > 1 or series[0].label or seeded or baseline is not None:
        legend_below_data(ax, fontsize="small")
    zoom_note(ax, column)


def _draw_curves(ax: Any, groups: Mapping[str, list[Run]], column: str, colors: dict,
                 names: Mapping[str, str]) -> None:
    """Each config's `column` per epoch: the mean over its seeds, with a ± sample std band."""
    ax.set(title=f"{figure_name(column, names)} per epoch", xlabel=EPOCH, ylabel=figure_name(column, names))
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
    drawn = 0
    for label, runs in groups.items():
        by_epoch: dict[float, list[float]] = {}
        for run in runs:
            for row in run.metrics:
                if is_finite(epoch := row.get(EPOCH)) and is_finite(value := row.get(column)):
                    by_epoch.setdefault(epoch, []).append(value)
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        stats = [_mean_std(by_epoch[e]) for e in epochs]
        means = [m for m, _ in stats]
        color = colors[label]
        ax.plot(epochs, means, "-o", ms=3, color=color, label=label)
        if len(runs) > 1:
            spread = [sd or 0.0 for _, sd in stats]
            ax.fill_between(epochs, [m - sd for m, sd in zip(means, spread)], [m + sd for m, sd in zip(means, spread)],
                            color=color, alpha=0.15, lw=0)
        drawn += 1
    if not drawn:
        _no_data(ax, f"{column} in {METRICS}")
        return
    if drawn <= MAX_LABELLED:
        legend_below_data(ax, fontsize="x-small")
    zoom_note(ax, column)
