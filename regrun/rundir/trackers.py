"""Experiment trackers beside the run directory's own files: TensorBoard and MLflow.

metrics.csv and summary.json are always written (rundir.py); the `logger` config group
adds trackers, several at once (`logger=[tensorboard,mlflow]`): conf/logger/*.yaml each
hold a mapping keyed by the tracker's name, which merge like `reg` presets do.

A tracker gets each epoch's metrics row as it is written (`log_row`), each steps.csv row
with trainer.log_steps (`log_step`), the firing density of each unit of the targeted
activation modules at each evaluation (`log_densities`), the summary at the end
(`log_summary`), and `close` whatever happened. The row's keys are metrics.csv's
columns; the λ of each target is added as `lambda.<target>` when the row lacks it (a
row carries it when λ follows a schedule), so every tracker plots λ beside the penalty.
"""

import importlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from regrun.config import flatten
from regrun.errors import RegrunError, choices, is_number
from regrun.layout import (
    COMPLETED,
    CONFIG,
    EPOCH,
    INTERRUPTED,
    METRICS,
    MLFLOW,
    PRUNE,
    STEP,
    SUMMARY,
    TARGETS,
    TENSORBOARD,
    lambda_column,
)

STEPS_GROUP = "steps"  # the trackers' name for the figures of steps.csv, apart from the epochs'


class MetricLogger(Protocol):
    """What the run tells a tracker (torchtune's MetricLoggerInterface, by rows)."""

    def log_row(self, row: Mapping[str, Any]) -> None:
        """One epoch's metrics row, as metrics.csv gets it."""

    def log_step(self, row: Mapping[str, Any]) -> None:
        """One step's row, as steps.csv gets it (trainer.log_steps): its loss terms and λ."""

    def log_densities(self, step: int, densities: Mapping[str, Sequence[float]]) -> None:
        """Per targeted activation module, each unit's firing density on the test set (the
        fraction of its entries that are non-zero) at an evaluated epoch's global step."""

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """summary.json's content, once the run has ended (any status)."""

    def close(self) -> None:
        """Flush and release; called once, last, also when the run failed."""


def figures(row: Mapping[str, Any], lambdas: Mapping[str, float]) -> dict[str, float]:
    """The row's numbers, λ of each target included, without the epoch and step counters."""
    numbers = {k: float(v) for k, v in row.items() if is_number(v) and k not in (EPOCH, STEP)}
    return {lambda_column(t): float(lam) for t, lam in lambdas.items()} | numbers


def hyperparameters(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config as flat `key: number | string | bool`, which trackers accept as parameters."""
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in flatten(cfg).items()}


def target_lambdas(cfg: Mapping[str, Any]) -> dict[str, float]:
    """The configured λ of each target (validated by then: the targets are resolved first)."""
    targets = (cfg.get("reg") or {}).get("targets") or {}
    return {name: spec["lambda"] for name, spec in targets.items() if is_number(spec.get("lambda"))}


def _options(name: str, node: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A tracker's config node, every key known; unset keys take the defaults."""
    node = node or {}
    if not isinstance(node, Mapping):
        raise RegrunError(f"logger.{name} must be a mapping of options, got {node!r}")
    for key in node:
        if key not in defaults:
            raise RegrunError(f"logger.{name}.{key}: unknown key; allowed: {choices(defaults)}")
    return {**defaults, **node}


def _require(module: str, name: str, extra: str) -> Any:
    """Import a tracker's library, or a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RegrunError(f"logger={name} needs the {extra} package, which is not installed; "
                          f"install it with: pip install 'regrun[{extra}]'") from None


def tag(key: str) -> str:
    """A TensorBoard tag, grouped by kind: penalty.l1.raw → penalty/l1.raw, test_acc → test/acc."""
    head, dot, rest = key.partition(".")
    if dot:
        return f"{head}/{rest}"
    split, _, figure = key.partition("_")
    return f"{split}/{figure}" if figure else key


class TensorBoardLogger:
    """Event files in <run dir>/<dir>/: every figure per epoch, weight histograms, and the
    hyperparameters with the final figures (TensorBoard's HParams view, over a sweep's
    runs when its log dir is the sweep root)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"dir": TENSORBOARD, "histograms": True}

    def __init__(self, out: Path, options: Mapping[str, Any], cfg: Mapping[str, Any], model: nn.Module):
        tensorboard = _require("torch.utils.tensorboard", "tensorboard", "tensorboard")
        self.writer = tensorboard.SummaryWriter(log_dir=str(out / options["dir"]))
        self.histograms = bool(options["histograms"])
        self.cfg, self.model, self.lambdas = cfg, model, target_lambdas(cfg)

    def log_row(self, row: Mapping[str, Any]) -> None:
        """Each figure as a scalar at the epoch's global step; histograms of the weights."""
        step = row[STEP]
        for key, value in figures(row, self.lambdas).items():
            self.writer.add_scalar(tag(key), value, step)
        if self.histograms:
            for name, param in self.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", param.detach(), step)
        self.writer.flush()

    def log_step(self, row: Mapping[str, Any]) -> None:
        """Each figure of the step as a scalar under `steps/` (apart from the epoch means)."""
        for key, value in figures(row, {}).items():
            self.writer.add_scalar(f"{STEPS_GROUP}/{tag(key)}", value, row[STEP])

    def log_densities(self, step: int, densities: Mapping[str, Sequence[float]]) -> None:
        """A histogram of the units' firing densities per module (`density/<module>`)."""
        for module, density in densities.items():
            self.writer.add_histogram(f"density/{module}", torch.tensor(density, dtype=torch.float64), step)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """The config as hyperparameters, the final figures as their metrics (`final/...`)."""
        final = figures(summary.get("final") or {}, self.lambdas)
        metrics = {f"final/{tag(k)}": v for k, v in final.items()}
        params = hyperparameters(self.cfg) | {"status": summary["status"]}
        # run_name ".": into this run's own folder, so that TensorBoard shows one run per job.
        self.writer.add_hparams(params, metrics, run_name=".")

    def close(self) -> None:
        """Flush the event files."""
        self.writer.close()


class MLflowLogger:
    """An MLflow run in a local store (no server): the config as parameters, each epoch's
    figures as metrics, the run's files as artifacts, the status as the run's end."""

    DEFAULTS: ClassVar[dict[str, Any]] = {"tracking_uri": None, "experiment": "regrun", "artifacts": True}
    ARTIFACTS = (CONFIG, TARGETS, METRICS, SUMMARY, PRUNE)

    def __init__(self, out: Path, options: Mapping[str, Any], cfg: Mapping[str, Any], model: nn.Module):
        _require("mlflow", "mlflow", "mlflow")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = options["tracking_uri"] or (out.resolve().parent / MLFLOW).as_uri()
        if uri.startswith("file:") or "://" not in uri:
            # MLflow keeps its file store in maintenance mode and refuses it unless asked;
            # it is the one local store that needs no database packages.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.out, self.artifacts, self.lambdas = out, bool(options["artifacts"]), target_lambdas(cfg)
        experiment = self._experiment(str(options["experiment"]))
        self.run_id = self.client.create_run(experiment, run_name=f"{out.parent.name}/{out.name}",
                                             tags={"regrun.run_dir": str(out.resolve())}).info.run_id
        params = [Param(k, str(v)) for k, v in hyperparameters(cfg).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        self.ended = False

    def _experiment(self, name: str) -> str:
        """The experiment's id, created when missing (a parallel job may create it first)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # created meanwhile by another job of the sweep
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log_row(self, row: Mapping[str, Any]) -> None:
        """The row's figures as metrics at the epoch's global step."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, row[STEP]) for k, v in figures(row, self.lambdas).items()]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a call
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def log_step(self, row: Mapping[str, Any]) -> None:
        """The step's figures as metrics `steps.<column>` at its global step."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(f"{STEPS_GROUP}.{k}", v, stamp, row[STEP])
                                                    for k, v in figures(row, {}).items()])

    def log_densities(self, step: int, densities: Mapping[str, Sequence[float]]) -> None:
        """Nothing: MLflow has no histograms (summary.json, an artifact, holds the final densities)."""

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """The status as a tag and the run's end; the run directory's small files as artifacts."""
        self.client.set_tag(self.run_id, "regrun.status", summary["status"])
        if self.artifacts:
            for name in self.ARTIFACTS:
                if (self.out / name).exists():
                    self.client.log_artifact(self.run_id, str(self.out / name))
        ends = {COMPLETED: "FINISHED", INTERRUPTED: "KILLED"}
        self.client.set_terminated(self.run_id, ends.get(summary["status"], "FAILED"))
        self.ended = True

    def close(self) -> None:
        """A run that ended without a summary (a crash) is marked failed."""
        if not self.ended:
            self.client.set_terminated(self.run_id, "FAILED")


TRACKERS: dict[str, type[TensorBoardLogger] | type[MLflowLogger]] = {"tensorboard": TensorBoardLogger, "mlflow": MLflowLogger}


class Loggers:
    """The configured trackers as one: each call goes to every one of them."""

    def __init__(self, loggers: Sequence[MetricLogger]):
        self.loggers = list(loggers)

    def log_row(self, row: Mapping[str, Any]) -> None:
        """Send an epoch's row to every tracker."""
        for logger in self.loggers:
            logger.log_row(row)

    def log_step(self, row: Mapping[str, Any]) -> None:
        """Send a step's row to every tracker."""
        for logger in self.loggers:
            logger.log_step(row)

    def log_densities(self, step: int, densities: Mapping[str, Sequence[float]]) -> None:
        """Send the firing densities of an evaluation to every tracker."""
        for logger in self.loggers:
            logger.log_densities(step, densities)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Send the summary to every tracker."""
        for logger in self.loggers:
            logger.log_summary(summary)

    def close(self) -> None:
        """Close every tracker."""
        for logger in self.loggers:
            logger.close()


def check_loggers(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The `logger` node, validated: tracker name → its options, defaults filled in."""
    node = cfg.get("logger") or {}
    if not isinstance(node, Mapping):
        raise RegrunError(f"logger must be a mapping of tracker name to options, got {node!r}")
    for name in node:
        if name not in TRACKERS:
            raise RegrunError(f"logger.{name}: unknown logger; allowed: {choices(TRACKERS)} "
                              f"({METRICS} and {SUMMARY} are always written)")
    return {name: _options(name, node[name], TRACKERS[name].DEFAULTS) for name in node}


def build_loggers(cfg: Mapping[str, Any], out: Path, model: nn.Module) -> Loggers:
    """Start the trackers the config names, in the run directory `out`."""
    started: list[MetricLogger] = []
    try:
        for name, options in check_loggers(cfg).items():
            started.append(TRACKERS[name](out, options, cfg, model))
    except BaseException:
        Loggers(started).close()
        raise
    return Loggers(started)

