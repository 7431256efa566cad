"""Experiment trackers beside the run directory's own files: TensorBoard and MLflow.

metrics.csv and summary.json are always written (rundir/files.py); the `logger` config
group adds trackers, several at once (`logger=[tensorboard,mlflow]`): conf/logger/*.yaml
each hold a mapping keyed by the tracker's name, which merge like `reg` presets do.

    settings.py     the `logger` node checked with the rest of the config; the trackers'
                    folders and servers checked before a run writes a file
    common.py       the interface a run calls, figures, parameters, the run's job and source
    group.py        the configured trackers as one (`Loggers`), started by `build_loggers`
    tensorboard.py  event files; a sweep's HParams experiment, trade-off plots, summary
    mlflow.py       a run per run, nested under a parent run per sweep

A tracker gets each epoch's metrics row as it is written (`log_row`), each steps.csv row
with trainer.log_steps (`log_step`), the firing density of each unit of the targeted
activation modules at each evaluation (`log_densities`), the summary at the end
(`log_summary`), and `close` whatever happened. The row's keys are metrics.csv's
columns; the λ of each target is added as `lambda.<target>` when the row lacks it (a
row carries it when λ follows a schedule), so every tracker plots λ beside the penalty.
A sweep's own part (the parent run, the experiment) is done by its Hydra callback,
regrun/cli/sweep_trackers.py.
"""

from regrun.rundir.trackers.common import (
    STEPS_GROUP,
    Job,
    MetricLogger,
    figures,
    job_of,
    param_value,
    param_values,
    tag,
)
from regrun.rundir.trackers.group import Loggers, build_loggers
from regrun.rundir.trackers.settings import (
    MLflowSettings,
    TensorBoardSettings,
    TrackerSettings,
    check_loggers,
    reach_loggers,
)

__all__ = [
    "STEPS_GROUP",
    "Job",
    "Loggers",
    "MLflowSettings",
    "MetricLogger",
    "TensorBoardSettings",
    "TrackerSettings",
    "build_loggers",
    "check_loggers",
    "figures",
    "job_of",
    "param_value",
    "param_values",
    "reach_loggers",
    "tag",
]
