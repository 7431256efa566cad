"""The end of a sweep: a summary of its jobs in the sweep root.

Hydra calls `SweepSummary.on_multirun_end` once every job of a multirun has returned
(conf/config.yaml registers it under hydra.callbacks). It writes

    summary.csv    one row per job: job number, path, overrides, status, error, final figures
    tradeoff.png   the plots of `regrun compare --plot` over the completed jobs
    tradeoff_prune.png   their pruning curves, when the jobs were pruned (prune.at_end=true)
    tradeoff_density.png the firing densities of the units an activation target penalizes

and prints the comparison table. Jobs that did not complete are rows with their status
and error, never dropped; nothing here may fail the sweep, whose runs are already written.
"""

import csv
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from regrun.analysis.compare import compare_runs, render_table
from regrun.analysis.runs import Run, differing_keys, find_runs
from regrun.console import shared_console
from regrun.layout import SWEEP_SUMMARY, TRADEOFF_PLOT, density_plot, prune_plot

log = logging.getLogger(__name__)
JOB_COLUMNS = ("job", "path", "overrides", "status", "error")
# The statuses of the jobs of the sweep just summarized, whatever process ran them: the
# `regrun -m` exit code comes from them.
STATUSES: list[str] = []


class SweepSummary(Callback):
    """Hydra callback: summary.csv, tradeoff.png and a table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Summarize the sweep in `hydra.sweep.dir`; any failure is a logged warning."""
        try:
            STATUSES[:] = [run.status for run in summarize_sweep(Path(config.hydra.sweep.dir))]
        except Exception as err:  # the jobs' results are on disk already: never fail the sweep here
            log.warning("sweep summary not written: %s", err)


def summarize_sweep(sweep_dir: Path) -> list[Run]:
    """Write summary.csv and tradeoff.png into `sweep_dir` and print the table; returns the jobs."""
    runs = find_runs([sweep_dir])
    write_summary_csv(runs, sweep_dir, sweep_dir / SWEEP_SUMMARY)
    comparison = compare_runs(runs)
    comparison.sort()
    render_table(comparison, shared_console())  # rich's global console, as the log handler's
    log.info("sweep summary: %s", sweep_dir / SWEEP_SUMMARY)
    try:
        from regrun.analysis.plots import default_x, plot_runs

        plot_runs(runs, sweep_dir / TRADEOFF_PLOT, x=default_x(runs), config_keys=differing_keys(runs))
        log.info("trade-off plot: %s", sweep_dir / TRADEOFF_PLOT)
    except Exception as err:  # a plot is a bonus: the CSV above is the record
        log.warning("%s not written: %s", TRADEOFF_PLOT, err)
    _plot_pruning(runs, sweep_dir)
    _plot_densities(runs, sweep_dir)
    return runs


def _plot_pruning(runs: Sequence[Run], sweep_dir: Path) -> None:
    """tradeoff_prune.png, when some job has pruning rows (prune.at_end)."""
    out = sweep_dir / prune_plot(TRADEOFF_PLOT)
    try:
        from regrun.analysis.plots import default_y
        from regrun.analysis.prune_plots import plot_pruning, pruned_runs

        if pruned := pruned_runs(runs):
            plot_pruning(pruned, out, default_y(pruned), differing_keys(runs))
            log.info("pruning curves: %s", out)
    except Exception as err:  # a plot is a bonus, as above
        log.warning("%s not written: %s", out.name, err)


def _plot_densities(runs: Sequence[Run], sweep_dir: Path) -> None:
    """tradeoff_density.png, when some job has an activation target (its units' firing densities)."""
    out = sweep_dir / density_plot(TRADEOFF_PLOT)
    try:
        from regrun.analysis.density_plots import density_runs, plot_densities

        if drawn := density_runs(runs):
            plot_densities(drawn, out, differing_keys(runs))
            log.info("firing densities: %s", out)
    except Exception as err:  # a plot is a bonus, as above
        log.warning("%s not written: %s", out.name, err)


def write_summary_csv(runs: Sequence[Run], root: Path, out: Path) -> None:
    """One row per job in job order: where it is, what it overrode, how it ended, every final figure."""
    figures = list(dict.fromkeys(key for run in runs for key in run.final))
    jobs = sorted(runs, key=lambda run: (run.job_num is None, run.job_num or 0))
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*JOB_COLUMNS, *figures], lineterminator="\n")
        writer.writeheader()
        for run in jobs:
            writer.writerow({"job": run.job_num, "path": run.path.relative_to(root.resolve()),
                             "overrides": " ".join(run.overrides), "status": run.status,
                             "error": run.error or "", **run.final})


def release_workers() -> None:
    """Kill the joblib launcher's worker processes once the sweep is over.

    loky keeps its workers for reuse and, when regrun exits, waits while each one tears
    down its torch, about a second each. Every job has returned by now, so the idle
    workers hold nothing to lose.
    """
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None)  # None: no joblib sweep ran in this process
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)
