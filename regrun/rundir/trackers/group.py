"""The configured trackers as one: started together, each call sent to each of them.

A tracker that fails once the run trains (a server gone, a full disk under its folder) is
dropped with one warning and the run goes on: metrics.csv and summary.json are the record,
a tracker a copy of it. Failing to start is different: that is a setting that cannot work,
refused before the run writes anything (settings.py).
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from regrun.errors import one_line
from regrun.layout import METRICS, SUMMARY
from regrun.rundir.trackers.common import Job, MetricLogger
from regrun.rundir.trackers.settings import MLflowSettings, TensorBoardSettings, TrackerSettings

log = logging.getLogger(__name__)


def start(name: str, settings: TrackerSettings, cfg: Mapping[str, Any], model: Any, job: Job) -> MetricLogger:
    """Start one tracker (its library imported only now: torch's TensorBoard writer, MLflow)."""
    if isinstance(settings, TensorBoardSettings):
        from regrun.rundir.trackers.tensorboard import TensorBoardLogger

        return TensorBoardLogger(settings, cfg, model, job)
    assert isinstance(settings, MLflowSettings), name
    from regrun.rundir.trackers.mlflow import MLflowLogger

    return MLflowLogger(settings, cfg, model, job)


class Loggers:
    """The configured trackers as one: each call goes to every one of them still working."""

    def __init__(self, loggers: Mapping[str, MetricLogger]):
        self.loggers = dict(loggers)  # by name, for the warning when one stops

    def _each(self, call: Callable[[MetricLogger], None]) -> None:
        for name, logger in list(self.loggers.items()):
            try:
                call(logger)
            except Exception as err:
                del self.loggers[name]
                log.warning("logger %s stopped: %s; the run goes on without it (%s and %s hold every figure)",
                            name, one_line(err), METRICS, SUMMARY)

    def log_row(self, row: Mapping[str, Any]) -> None:
        """Send an epoch's row to every tracker."""
        self._each(lambda logger: logger.log_row(row))

    def log_step(self, row: Mapping[str, Any]) -> None:
        """Send a step's row to every tracker."""
        self._each(lambda logger: logger.log_step(row))

    def log_densities(self, step: int, densities: Mapping[str, Sequence[float]]) -> None:
        """Send the firing densities of an evaluation to every tracker."""
        self._each(lambda logger: logger.log_densities(step, densities))

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Send the summary to every tracker."""
        self._each(lambda logger: logger.log_summary(summary))

    def close(self) -> None:
        """Close every tracker."""
        self._each(lambda logger: logger.close())
        self.loggers.clear()


def build_loggers(loggers: Mapping[str, TrackerSettings], cfg: Mapping[str, Any], job: Job, model: Any) -> Loggers:
    """Start the trackers `loggers` names (`check_loggers`' settings) for the run `job` with
    the config `cfg` (its places checked by `reach_loggers` before); a tracker that cannot
    start closes those started before it."""
    started: dict[str, MetricLogger] = {}
    try:
        for name, settings in loggers.items():
            started[name] = start(name, settings, cfg, model, job)
    except BaseException:
        Loggers(started).close()
        raise
    return Loggers(started)
