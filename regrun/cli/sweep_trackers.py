"""The trackers' part of a sweep: Hydra callback around a multirun (conf/config.yaml
registers it under hydra.callbacks, before the sweep summary, so that it starts first and
ends last: Hydra calls the callbacks' ends in reverse order).

At the sweep's start, before any job: the `logger` settings checked, a tracking server
reached (a one-line error, exit 2, when it does not answer; a stop signal ends the wait),
and MLflow's parent run started, which the jobs nest under. At its end, after the sweep
summary: TensorBoard's HParams experiment over the jobs (the differing keys first, the
headline figures as metrics), the trade-off plots and the summary table in the sweep's
TensorBoard folder; the parent run ended with the summary and plots as artifacts. Nothing
at the end may fail the sweep, whose runs are written: a failure there is a warning.
"""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regrun.errors import RegrunError
from regrun.layout import COMPLETED, SWEEP_SUMMARY, TRADEOFF_PLOT, density_plot, prune_plot

log = logging.getLogger(__name__)


class SweepTrackers(Callback):
    """Hydra callback: the sweep's tracker settings and parent run at its start, its
    experiment and plots at its end (see the module's docstring)."""

    def __init__(self) -> None:
        self.loggers: dict[str, Any] = {}
        self.sweep: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check the trackers' settings and places; start MLflow's parent run. A refusal is one line, exit 2."""
        from regrun.cli.job import fail
        from regrun.jobs.signals import STOP

        try:
            loggers = sweep_loggers(config)
            if loggers and not STOP():  # after a stop signal the jobs see it and do not start, as without trackers
                with STOP.immediate():  # a stop signal ends a wait for a server at once
                    self._start(config, loggers)
        except RegrunError as err:
            fail(str(err))

    def _start(self, config: DictConfig, loggers: dict[str, Any]) -> None:
        from regrun.rundir.trackers import Job, MLflowSettings, TensorBoardSettings
        from regrun.rundir.trackers.common import record_sweep
        from regrun.rundir.trackers.settings import check_writable, reach_store, store_uri

        for name, settings in loggers.items():  # what can be checked before the sweep's folder exists
            if isinstance(settings, TensorBoardSettings) and Path(settings.dir).expanduser().is_absolute():
                check_writable(f"logger.{name}.dir", settings.dir, Path(settings.dir).expanduser())
            if isinstance(settings, MLflowSettings) and settings.tracking_uri is not None:
                reach_store(f"logger.{name}.tracking_uri", store_uri(settings, Job(Path.cwd())), settings)
        self.loggers, self.sweep = loggers, Path(str(config.hydra.sweep.dir)).resolve()
        overrides = [str(o) for o in config.hydra.overrides.task]
        record_sweep(self.sweep, overrides=overrides)  # for the jobs' names, whatever the sweeper
        if isinstance(mlflow := loggers.get("mlflow"), MLflowSettings):
            from regrun.rundir.trackers.mlflow import start_sweep

            start_sweep(mlflow, self.sweep, overrides)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """The experiment and plots into TensorBoard, the parent run ended; failures are warnings."""
        if not self.loggers or self.sweep is None:
            return
        try:
            end_sweep(self.loggers, self.sweep)
        except Exception as err:  # the jobs' results are on disk already: never fail the sweep here
            log.warning("the trackers' sweep summary not written: %s", err)


def sweep_loggers(config: DictConfig) -> dict[str, Any]:
    """The sweep's `logger` node checked (`check_loggers`); {} when a ${...} in it does not
    resolve here (each job then says so)."""
    from regrun.rundir.trackers import check_loggers

    try:
        node = OmegaConf.to_container(config.logger, resolve=True) if "logger" in config else None
    except OmegaConfBaseException:
        return {}
    return dict(check_loggers({"logger": node}))


def plots(sweep: Path) -> list[Path]:
    """The sweep's trade-off plots that were drawn."""
    names = (TRADEOFF_PLOT, prune_plot(TRADEOFF_PLOT), density_plot(TRADEOFF_PLOT))
    return [sweep / name for name in names if (sweep / name).exists()]


def end_sweep(loggers: Mapping[str, Any], sweep: Path) -> None:
    """Write each tracker's end of the sweep in `sweep` from the runs its jobs wrote."""
    from regrun.analysis.runs import differing_keys, find_runs
    from regrun.rundir.trackers import param_values

    runs = find_runs([sweep])
    if "tensorboard" in loggers:
        from regrun.rundir.trackers.tensorboard import sweep_metrics, write_sweep

        done = [run for run in runs if run.status == COMPLETED] or runs
        headlines = {run.headline for run in done if run.headline}
        headline = headlines.pop() if len(headlines) == 1 else None
        columns = list(dict.fromkeys(key for run in done for key in run.final))
        metrics = sweep_metrics(columns, headline, done[0].target_names if done else [])
        differing = differing_keys(runs)
        folder = write_sweep(loggers["tensorboard"], sweep, [param_values(run.config) for run in runs if run.config],
                             differing, metrics, plots(sweep), table(runs, differing, metrics[:2]))
        log.info("TensorBoard: tensorboard --logdir %s", folder)
    if "mlflow" in loggers:
        from regrun.rundir.trackers.mlflow import end_sweep as end_parent

        end_parent(loggers["mlflow"], sweep, [run.status for run in runs], [sweep / SWEEP_SUMMARY, *plots(sweep)])


def table(runs: Sequence[Any], keys: Sequence[str], figures: Sequence[str]) -> str:
    """The sweep's jobs as a Markdown table (TensorBoard's text tab): job, status, the
    differing keys' values, the first figures."""
    from regrun.analysis.runs import config_values, short_names

    names = short_names(keys)
    head = ["job", "status", *(names[k] for k in keys), *figures]
    rows = [[str(run.job_num if run.job_num is not None else run.path.name), run.status,
             *(str(v) for v in config_values(run, keys).values()),
             *(f"{run.final[f]:.4g}" if f in run.final else "" for f in figures)] for run in runs]
    lines = [head, ["---"] * len(head), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
