"""TensorBoard: a run's event files, and a sweep's HParams experiment over its jobs.

Each run writes, in its event folder (settings.py's `event_dir`: one folder per job of a
sweep, named by the job): every figure per epoch (`test/acc`, `penalty/l1.raw`, ...),
weight histograms and the firing densities of the targeted activation modules' units
(each an option), its config and overrides as text, and the HParams plugin's session:
its hyperparameters when it starts, its status when it ends. Its final figures are the
last points of those per-epoch charts, which the HParams table reads as its metrics: no
second group of one-point charts.

At the end of a sweep, its root's event folder gets the HParams experiment: the keys that
differ between the jobs (marked as differing, so the table and the parallel coordinates
view lead with λ, not with constants), the headline figures as metrics, the trade-off
plots as images and the summary table as text. Until then TensorBoard builds an
experiment from the sessions it finds.
"""

import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from regrun.layout import COMPLETED, DIVERGED, FAILED, PENALTY, SPARSITY, STEP, split_figure
from regrun.rundir.trackers.common import (
    STEPS_GROUP,
    Job,
    ParamValue,
    figures,
    param_values,
    require,
    tag,
    target_lambdas,
)
from regrun.rundir.trackers.settings import TensorBoardSettings, event_dir, sweep_event_dir

CONFIG_TEXT = "config"  # the text tags of a run: its config (YAML) and its command line
OVERRIDES_TEXT = "overrides"
SWEEP_GROUP = "sweep"  # the tags of a sweep's own events: sweep/tradeoff, sweep/summary


class TensorBoardLogger:
    """Event files of one run (see the module's docstring)."""

    def __init__(self, settings: TensorBoardSettings, cfg: Mapping[str, Any], model: Any, job: Job):
        tensorboard = require("torch.utils.tensorboard", "tensorboard", "tensorboard")
        self.logdir = event_dir(settings, job)
        self.writer = tensorboard.SummaryWriter(log_dir=str(self.logdir))
        self.settings, self.model, self.lambdas = settings, model, target_lambdas(cfg)
        self.writer.file_writer.add_summary(session_start(param_values(cfg)))
        self.writer.add_text(CONFIG_TEXT, code_block(yaml.safe_dump(dict(cfg), sort_keys=False)), 0)
        self.writer.add_text(OVERRIDES_TEXT, code_block(shlex.join(["regrun", *job.overrides])), 0)
        self.writer.flush()

    def log_row(self, row: Mapping[str, Any]) -> None:
        """Each figure as a scalar at the epoch's global step; histograms of the weights."""
        step = row[STEP]
        for key, value in figures(row, self.lambdas).items():
            self.writer.add_scalar(tag(key), value, step)
        if self.settings.histograms:
            for name, param in self.model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", param.detach(), step)
        self.writer.flush()

    def log_step(self, row: Mapping[str, Any]) -> None:
        """Each figure of the step as a scalar under `steps/` (apart from the epoch means)."""
        for key, value in figures(row, {}).items():
            self.writer.add_scalar(f"{STEPS_GROUP}/{tag(key)}", value, row[STEP])

    def log_densities(self, step: int, densities: Mapping[str, Sequence[float]]) -> None:
        """A histogram of the units' firing densities per module (`density/<module>`)."""
        if not self.settings.densities:
            return
        import torch

        for module, density in densities.items():
            self.writer.add_histogram(f"density/{module}", torch.tensor(density, dtype=torch.float64), step)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """The session's end: its status (the final figures are the charts' last points)."""
        self.writer.file_writer.add_summary(session_end(summary["status"]))
        self.writer.flush()

    def close(self) -> None:
        """Flush the event files."""
        self.writer.close()


def code_block(text: str) -> str:
    """Markdown for TensorBoard's text tab: the text as it is, in a code block."""
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())


def _summary(name: str, data: Any) -> Any:
    """An event summary holding the HParams plugin's data (what its summary API writes)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    summary = Summary()
    summary.value.add(tag=name, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def session_start(params: Mapping[str, ParamValue]) -> Any:
    """The HParams session of a run: its hyperparameters, set when it starts."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for key, value in params.items():
        if isinstance(value, bool):
            info.hparams[key].bool_value = value
        elif isinstance(value, int | float):
            info.hparams[key].number_value = value
        else:
            info.hparams[key].string_value = value
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end(status: str) -> Any:
    """The end of a run's session: success when it completed, failure when it diverged or
    failed, unknown when it was interrupted (this TensorBoard has no 'aborted')."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    statuses = {COMPLETED: api_pb2.STATUS_SUCCESS, DIVERGED: api_pb2.STATUS_FAILURE, FAILED: api_pb2.STATUS_FAILURE}
    info = plugin_data_pb2.SessionEndInfo(status=statuses.get(status, api_pb2.STATUS_UNKNOWN), end_time_secs=time.time())
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def experiment(sessions: Sequence[Mapping[str, ParamValue]], differing: Sequence[str], metrics: Sequence[str]) -> Any:
    """The HParams experiment of a sweep: the hyperparameters in `differing`, marked so, and
    the metrics (metrics.csv columns, as their tags) in the order given. TensorBoard's table
    and parallel coordinates show what an experiment declares, the first five of each at
    first: the keys every job has alike would crowd λ out, and each run's config text holds
    them. When no key differs, every hyperparameter of the sessions is declared."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    keys = list(differing) or list(dict.fromkeys(key for params in sessions for key in params))
    infos = [hparam_info(key, [p[key] for p in sessions if key in p], key in differing) for key in keys]
    declared = api_pb2.Experiment(
        hparam_infos=infos, time_created_secs=time.time(),
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag(m)), display_name=m) for m in metrics])
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=declared))


def hparam_info(key: str, values: Sequence[ParamValue], differs: bool) -> Any:
    """A hyperparameter's type and domain from its values: true/false, an interval of
    numbers, or the strings seen."""
    from tensorboard.plugins.hparams import api_pb2

    info = api_pb2.HParamInfo(name=key, differs=differs)
    if values and all(isinstance(v, bool) for v in values):
        info.type = api_pb2.DATA_TYPE_BOOL
        info.domain_discrete.extend(sorted(set(values)))
    elif values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        info.type = api_pb2.DATA_TYPE_FLOAT64
        info.domain_interval.min_value, info.domain_interval.max_value = min(values), max(values)
    else:
        info.type = api_pb2.DATA_TYPE_STRING
        info.domain_discrete.extend(sorted({str(v) for v in values}))
    return info


def sweep_metrics(columns: Sequence[str], headline: str | None, targets: Sequence[str]) -> list[str]:
    """The headline figures of a sweep among its runs' final figures (metrics.csv columns),
    most telling first: the task's headline, the first target's zero fraction (the trade-off
    plot's axes), the other test and validation figures, each target's sparsity figures and
    raw penalty, the weights' sparsity, the training losses. Per-layer figures, λ (a
    hyperparameter) and timings are left to the charts."""
    present = set(columns)
    first_x = f"{SPARSITY}{targets[0]}.zero_frac" if targets else f"{SPARSITY}weights.zero_frac"
    order = [headline or "", first_x]
    order += [c for split in ("test", "val") for c in columns if c.startswith(split_figure(split, ""))]
    for target in targets:
        order += [c for c in columns if c.startswith(f"{SPARSITY}{target}.")] + [f"{PENALTY}{target}.raw"]
    order += [c for c in columns if c.startswith(f"{SPARSITY}weights.")]
    order += [split_figure("train", "task_loss"), split_figure("train", "total_loss")]
    return [c for c in dict.fromkeys(order) if c in present]


def write_sweep(settings: TensorBoardSettings, sweep: Path, sessions: Sequence[Mapping[str, ParamValue]],
                differing: Sequence[str], metrics: Sequence[str], images: Sequence[Path], table: str) -> Path:
    """The sweep's own events in its root's event folder: the HParams experiment, each of
    `images` (the trade-off plots) as an image and the summary `table` as text. Returns the folder."""
    tensorboard = require("torch.utils.tensorboard", "tensorboard", "tensorboard")
    folder = sweep_event_dir(settings, sweep)
    writer = tensorboard.SummaryWriter(log_dir=str(folder))
    try:
        writer.file_writer.add_summary(experiment(sessions, differing, metrics))
        for image in images:
            writer.add_image(f"{SWEEP_GROUP}/{image.stem}", _pixels(image), 0, dataformats="HWC")
        if table:
            writer.add_text(f"{SWEEP_GROUP}/summary", table, 0)
    finally:
        writer.close()
    return folder


def _pixels(path: Path) -> Any:
    """A PNG as an RGB array (height, width, 3)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
