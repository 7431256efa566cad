"""`regrun compare PATH...`: the runs under some paths side by side.

One row per run (or per group of runs that differ only by seed): the config values that
differ between the runs, then the final figures: the task's test figures, task loss,
each penalty, headline sparsity. Printed as a rich table, CSV, Markdown or JSON, with
an optional PNG of the trade-offs.

The runs are read by regrun/analysis/runs.py, compared by regrun/analysis/compare.py and
plotted by regrun/analysis/plots.py; with --plot, runs pruned by `regrun prune` also get
their pruning curves beside it (FILE_prune.png, regrun/analysis/prune_plots.py), and runs
with an activation target the firing densities of its units (FILE_density.png,
regrun/analysis/density_plots.py).
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from regrun.analysis.compare import (
    FORMATS,
    Comparison,
    compare_runs,
    render_csv,
    render_json,
    render_markdown,
    render_table,
    resolve_column,
    table_columns,
)
from regrun.analysis.runs import Run, differing_keys, find_runs
from regrun.console import shared_console
from regrun.errors import RegrunError
from regrun.layout import density_plot, prune_plot


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line error instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise RegrunError(message)


def parser() -> argparse.ArgumentParser:
    """The command line of `regrun compare`."""
    p = _Parser(prog="regrun compare", description=__doc__.split("\n\n")[1],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="run directories, sweep roots, or folders holding them")
    p.add_argument("--sort", metavar="COL", help="sort by this column (a unique suffix will do: 'lambda', 'test_acc')")
    p.add_argument("--desc", action="store_true", help="with --sort: largest first")
    p.add_argument("--group-seeds", action="store_true", help="one row per config: mean ± std over its seeds")
    p.add_argument("--baseline", metavar="RUN", help="show each figure's difference from this run (path or label)")
    p.add_argument("--format", default="table", choices=FORMATS, help="output format (default: table)")
    p.add_argument("--columns", metavar="COL,COL", type=_names,
                   help="table: show these columns (full names or unique suffixes) beside the run's; by default "
                        "as many as fit the terminal, the sweep's λ and the headline figure first (csv, markdown "
                        "and json always hold every column)")
    p.add_argument("--plot", metavar="FILE.png", type=Path, help="write the trade-off, λ and training-curve plots "
                                                              "(and FILE_prune.png: pruning curves of pruned runs; "
                                                              "FILE_density.png: firing densities of targeted units)")
    p.add_argument("--x", metavar="COL", help="plot: the sparsity figure (default: the first target's zero fraction)")
    p.add_argument("--y", metavar="COL", help="plot: the figure to trade off (default: the runs' headline "
                                             "figure, e.g. test_acc, test_r2, test_psnr)")
    return p


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give one or more column names, separated by commas")
    return names


def main(argv: list[str]) -> int:
    """Run `regrun compare`; returns the exit code (2 with a one-line error on bad input)."""
    try:
        args = parser().parse_args(argv)
        runs = find_runs(args.paths)
        comparison = compare_runs(runs, group_seeds=args.group_seeds, baseline=args.baseline)
        if args.sort is not None:
            comparison.sort(resolve_column(args.sort, comparison.columns, "--sort"), args.desc)
        else:
            comparison.sort()
        plot = _plot_settings(args, runs) if args.plot else None
        if args.columns:  # refused before anything is printed
            table_columns(comparison, 0, args.columns)
        _emit(comparison, args.format, args.columns)
        if plot is not None:
            from regrun.analysis.plots import plot_runs  # matplotlib only when a plot is asked for

            order = [run for row in comparison.rows for run in row.runs]
            plot_runs(order, args.plot, x=plot[0], y=plot[1], config_keys=differing_keys(runs))
            print(f"plot written to {args.plot}", file=sys.stderr)
            _plot_pruning(order, args.plot, differing_keys(runs))
            _plot_densities(order, args.plot, differing_keys(runs))
    except RegrunError as err:
        print(f"regrun compare: error: {err}", file=sys.stderr)
        return 2
    return 0


def _plot_settings(args: argparse.Namespace, runs: Sequence[Run]) -> tuple[str, str]:
    """The plot's x and y columns, checked before anything is printed."""
    from regrun.analysis.plots import default_x, default_y, plottable_columns

    if not args.plot.parent.is_dir():
        raise RegrunError(f"--plot {args.plot}: no folder {args.plot.parent} to write it in")
    columns = plottable_columns(runs)
    if not columns:
        raise RegrunError("--plot: no completed run to plot")
    x = resolve_column(args.x, columns, "--x") if args.x else default_x(runs)
    return x, resolve_column(args.y, columns, "--y") if args.y else default_y(runs)


def _plot_pruning(runs: Sequence[Run], plot: Path, config_keys: Sequence[str]) -> None:
    """The pruning curves beside the plot, when some run has pruning rows (prune.json)."""
    from regrun.analysis.plots import default_y
    from regrun.analysis.prune_plots import plot_pruning, pruned_runs

    if pruned := pruned_runs(runs):
        out = plot.with_name(prune_plot(plot.name))
        plot_pruning(pruned, out, default_y(pruned), config_keys)
        print(f"pruning curves written to {out}", file=sys.stderr)


def _plot_densities(runs: Sequence[Run], plot: Path, config_keys: Sequence[str]) -> None:
    """The firing-density histograms beside the plot, when some run has a targeted activation module."""
    from regrun.analysis.density_plots import density_runs, plot_densities

    if drawn := density_runs(runs):
        out = plot.with_name(density_plot(plot.name))
        plot_densities(drawn, out, config_keys)
        print(f"firing densities written to {out}", file=sys.stderr)


def _emit(comparison: Comparison, fmt: str, columns: Sequence[str] | None) -> None:
    if fmt == "table":
        render_table(comparison, shared_console(), columns)
        return
    render = {"csv": render_csv, "markdown": render_markdown, "json": render_json}[fmt]
    sys.stdout.write(render(comparison))
