"""One run, config to run directory: model + targets → trainer → files.

Everything that can be checked without data is checked first (trainer settings, dataset
name, model, targets, optimizer), then the data is loaded, then training starts; a bad
config costs a second, not an epoch. The same path continues a run from its checkpoint
(`regrun resume`): the model, targets and data are built again from the run's config and
the checkpoint puts back where training stood.
"""

import logging
import random
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from regrun.components.datasets import Data, DataSpec, Source, load_data, open_dataset
from regrun.components.models import build_model
from regrun.components.optimizers import implementation
from regrun.components.tasks import Task, check_output, resolve_task, task_summary, trivial_figures
from regrun.console import shared_console
from regrun.errors import RegrunError, choices, is_number
from regrun.jobs.display import DIAGNOSTICS, RichReporter, show_groups, show_summary, show_targets
from regrun.jobs.objective import check_objective
from regrun.jobs.signals import STOP
from regrun.layout import COMPLETED, GROUPS, lambda_column, split_figure
from regrun.measure.diagnostics import Chance, diagnose
from regrun.rundir.checkpoint import NAME as CHECKPOINT
from regrun.rundir.checkpoint import restore, save_checkpoint
from regrun.rundir.files import RunDir, WriteFailed, environment, loss_breakdown, mark_targeted, record_failure
from regrun.rundir.lock import one_writer
from regrun.rundir.trackers import Loggers, build_loggers
from regrun.schema import Range, check
from regrun.training.loop import Member, Outcome, TrainState, fit, steps_per_epoch
from regrun.training.param_groups import build_grouped_optimizer, describe_groups
from regrun.training.settings import TrainerSettings, pick_device
from regrun.training.step import SoloStep
from regrun.training.targets import Target, describe_targets, resolve_targets

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# The config's top-level keys: each names a config group, or is the seed.
ROOT_KEYS = ("seed", "trainer", "model", "dataset", "task", "optimizer", "reg", "sparsity", "objective", "logger")
# NumPy's legacy seeding takes 0 ≤ seed < 2³²; torch takes more, so NumPy's range is the one.
SEED = Annotated[int, Range(0, 2**32 - 1)]


def check_root(cfg: Mapping[str, Any]) -> int:
    """The top level of a config: no key beyond ROOT_KEYS (a typo there would configure
    nothing), every group present, and a seed that NumPy and torch both accept."""
    for key in cfg:
        if key not in ROOT_KEYS:
            raise RegrunError(f"{key}: unknown top-level key; allowed: {choices(ROOT_KEYS)}")
    for key in ("trainer", "model", "dataset", "optimizer", "reg"):
        if not isinstance(cfg.get(key), Mapping):
            raise RegrunError(f"{key} must be a mapping (the {key} config group), got {cfg.get(key)!r}")
    return check("seed", cfg.get("seed"), SEED)


def thresholds_from(cfg: dict[str, Any]) -> list[float]:
    """The `sparsity.thresholds` list, validated: positive numbers, in the config's order."""
    values = cfg.get("sparsity", {}).get("thresholds", [])
    if not isinstance(values, list) or not all(is_number(v) and v > 0 for v in values):
        raise RegrunError(f"sparsity.thresholds must be a list of positive numbers, got {values!r}")
    return [float(v) for v in values]


def reg_targets(reg: dict[str, Any]) -> dict[str, Any]:
    """The `reg.targets` mapping; any other key under `reg` is a typo that would regularize nothing."""
    for key in reg:
        if key != "targets":
            raise RegrunError(f"reg.{key}: unknown key; reg holds only `targets` (a mapping of target name to spec)")
    targets = reg.get("targets") or {}
    if not isinstance(targets, dict):
        raise RegrunError(f"reg.targets must be a mapping of target name to spec, got {targets!r}")
    return targets


def run(cfg: dict[str, Any], out: Path, checkpoint: Mapping[str, Any] | None = None,
        resume: bool = False) -> dict[str, Any]:
    """Train as `cfg` says and write the run directory `out`; returns the summary.

    With `resume`, `out` already holds this run: its metrics rows are kept, and training
    continues from `checkpoint` (or starts again when there is none). A fresh run that
    fails writes a `failed` summary before the error propagates; a failed resume leaves
    the run's files as they were, unless a file could not be written (disk full): then
    the summary says so. The folder's lock is held throughout (one writer per run).
    """
    with one_writer(out):  # re-entrant: the command line took it already
        started = time.perf_counter()
        rundir = RunDir(out)
        if resume:
            keep_rows(rundir, checkpoint)
        try:
            with ExitStack() as trackers:  # closed however the run ends
                return _train(cfg, rundir, checkpoint, started, trackers)
        except Exception as err:
            if not resume or isinstance(err, WriteFailed):  # a write failure is recorded, resumable
                record_failure(out, err, cfg)
            raise


def keep_rows(rundir: RunDir, checkpoint: Mapping[str, Any] | None) -> None:
    """The metrics rows a continued run keeps: the checkpoint's, and those written after it
    (metrics.csv runs ahead of a checkpoint saved every few epochs)."""
    done = checkpoint["metrics"] if checkpoint else []
    last = done[-1]["epoch"] if done else 0
    rundir.rows = done + [row for row in rundir.read_metrics() if row["epoch"] > last]


@dataclass
class Setup:
    """A run built from its config, before any data: what training and its files need."""

    cfg: dict[str, Any]
    seed: int
    settings: TrainerSettings
    thresholds: list[float]
    device: torch.device
    source: Source  # the dataset, opened: its spec now, its samples by `training_data`
    task_name: str
    task: Task
    goal: Any  # the checked `objective` node, or None
    model: torch.nn.Module
    targets: list[Target]
    optimizer: torch.optim.Optimizer
    groups: Any  # the resolved optimizer parameter groups (training/param_groups.py)
    example: torch.Tensor  # one zero input, for the shapes of captured outputs


@dataclass(frozen=True)
class Tables:
    """The rows of targets.json and groups.json, which summary.json repeats."""

    targets: list[dict]
    groups: list[dict]


def build(cfg: dict[str, Any]) -> Setup:
    """Check the config and build task, model, targets and optimizer from its seed; writes nothing."""
    seed = check_root(cfg)
    settings = TrainerSettings.from_config(cfg["trainer"])
    thresholds = thresholds_from(cfg)
    device = pick_device(settings.device)
    source = open_dataset(cfg["dataset"])
    spec = source.spec
    task_name, task = resolve_task(cfg.get("task"), spec)
    splits = ["val", "test"] if cfg["dataset"].get("val_size") is not None else ["test"]
    goal = check_objective(cfg, task, splits)
    seed_everything(seed)
    model = build_model(cfg["model"], spec.input_shape, task.num_outputs(spec)).to(device)
    check_model_output(model, cfg["model"]["name"], task_name, task, spec)
    targets = resolve_targets(model, reg_targets(cfg["reg"]))
    optimizer, groups = build_grouped_optimizer(model, cfg["optimizer"])
    _check_targets(targets, settings.epochs, optimizer, cfg["optimizer"]["name"])
    example = torch.zeros((1, *spec.input_shape), device=device)
    return Setup(cfg, seed, settings, thresholds, device, source, task_name, task, goal, model, targets,
                 optimizer, groups, example)


def record(setup: Setup, rundir: RunDir, console) -> Tables:
    """Show the targets and optimizer groups; write targets.json, groups.json and config.json."""
    target_rows = describe_targets(setup.targets, setup.model, setup.example)
    show_targets(target_rows, console)
    rundir.write_json("targets.json", target_rows)
    group_rows = describe_groups(setup.groups, setup.optimizer)
    show_groups(group_rows, console)
    rundir.write_json(GROUPS, group_rows)
    rundir.write_json("config.json", setup.cfg)
    return Tables(target_rows, group_rows)


def training_data(setup: Setup) -> Data:
    """The dataset on the run's device; a batch larger than the training set is refused."""
    data = load_data(setup.cfg["dataset"], setup.device, setup.source)
    batch_size = setup.settings.batch_size
    if batch_size > len(data.train):
        raise RegrunError(f"trainer.batch_size={batch_size} is larger than the training set "
                          f"({len(data.train)} samples); allowed: 1 to {len(data.train)}")
    return data


def describe_data(setup: Setup, data: Data) -> None:
    """Log what trains on what: dataset, device, task, sample counts, model and its size."""
    log.info("%s on %s, task %s: %d train / %s%d test samples; %s, %d parameters",
             data.name, setup.device, setup.task_name, len(data.train),
             f"{len(data.val)} validation / " if data.val else "", len(data.test), setup.cfg["model"]["name"],
             sum(p.numel() for p in setup.model.parameters()))


def start_state(setup: Setup, checkpoint: Mapping[str, Any] | None) -> TrainState:
    """Where training starts: the checkpoint's state, or a fresh one shuffling from the seed.

    Call it after `record`: its forward pass must come before the restored RNG states.
    """
    if checkpoint:
        return restore(checkpoint, setup.model, setup.optimizer, setup.device)
    return TrainState(torch.Generator().manual_seed(setup.seed))


def saver(setup: Setup, rundir: RunDir, state: TrainState, per_epoch: int) -> Callable[[], None]:
    """A function that writes the run's checkpoint as training stands now."""

    def save() -> None:
        step = state.epoch * per_epoch + (state.partial.batches if state.partial else 0)
        save_checkpoint(rundir.path / CHECKPOINT, setup.cfg, setup.model, setup.optimizer, state, step, rundir.rows)

    return save


def recorder(rundir: RunDir, loggers: Loggers) -> Callable[[dict], None]:
    """A function that records an epoch's metrics row: metrics.csv and the loggers."""

    def on_epoch(row: dict) -> None:
        rundir.append_metrics(row)
        loggers.log_row(row)

    return on_epoch


def _train(cfg: dict[str, Any], rundir: RunDir, checkpoint: Mapping[str, Any] | None,
           started: float, trackers: ExitStack) -> dict[str, Any]:
    console = shared_console()  # first: the log lines below go through it too
    setup = build(cfg)
    tables = record(setup, rundir, console)
    loggers = trackers.enter_context(closing(build_loggers(cfg, rundir.path, setup.model)))
    data = training_data(setup)
    describe_data(setup, data)
    state = start_state(setup, checkpoint)
    settings = setup.settings
    save = saver(setup, rundir, state, steps_per_epoch(len(data.train), settings.batch_size))
    if checkpoint:
        log.info("resuming at step %d (epoch %d of %d)", checkpoint["step"], state.epoch + 1, settings.epochs)
    ended: list[Outcome] = []
    member = Member(setup.model, setup.optimizer, setup.targets, state, recorder(rundir, loggers), save, ended.append)
    with RichReporter(settings.epochs, [t.name for t in setup.targets], list(setup.task.figures), console) as reporter:
        fit([member], SoloStep(setup.model, setup.optimizer, setup.targets), setup.task, data, settings,
            setup.thresholds, reporter, STOP)
    return finish(setup, ended[0], rundir, tables, data, loggers, started, console)


def finish(setup: Setup, outcome: Outcome, rundir: RunDir, tables: Tables, data: Data, loggers: Loggers,
           started: float, console) -> dict[str, Any]:
    """Write summary.json for how training ended (model.pt too when it completed), give it
    to the loggers and report it."""
    summary = _summary(outcome, rundir, setup.model, setup.targets, tables.targets, setup.thresholds, setup.cfg)
    summary["groups"] = tables.groups
    summary["task"] = task_summary(setup.task_name, setup.task)
    summary["warnings"] = _diagnostics(summary, rundir.rows, setup.task, data)
    if setup.goal is not None:
        summary["objective"] = setup.goal
    summary["environment"] = environment(setup.device, setup.seed, time.perf_counter() - started,
                                         implementation(setup.optimizer))
    rundir.write_json("summary.json", summary)
    loggers.log_summary(summary)
    _report(summary, rundir.path, console)
    return summary


def _check_targets(targets: list, epochs: int, optimizer: torch.optim.Optimizer, optimizer_name: str) -> None:
    """What a target asks that this run's epochs or optimizer cannot give: refused, or warned."""
    adam = isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW)
    for t in targets:
        if t.schedule.start_epoch > epochs:
            raise RegrunError(f"reg.targets.{t.name}.start_epoch={t.schedule.start_epoch} is after the last epoch "
                              f"(trainer.epochs={epochs}); allowed: 1 to {epochs}")
        if t.adaptive and not adam:
            raise RegrunError(f"reg.targets.{t.name}.proximal=adaptive scales the threshold by Adam's per-coordinate "
                              f"step; optimizer {optimizer_name!r} has none; allowed: adam, adamw (or proximal=true)")
        if t.proximal and not t.adaptive and adam:
            log.warning("%s: proximal L1 with %s: the threshold lr·λ is not scaled like Adam's per-coordinate "
                        "steps, so it zeroes far less than with optimizer=sgd at the same λ; "
                        "proximal=adaptive scales it", t.name, optimizer_name)


def check_model_output(model: torch.nn.Module, name: str, task_name: str, task: Task, spec: DataSpec) -> None:
    """One forward pass of an example batch (zeros, eval mode, no gradients) before training:
    the model must take the data's samples and give an output the task can compare."""
    parameter = next(model.parameters(), None)
    example = torch.zeros((2, *spec.input_shape), device=parameter.device if parameter is not None else None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(example)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RegrunError(f"model {name!r} cannot take samples of shape {spec.input_shape} from dataset "
                          f"{spec.name}: {reason}") from err
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise RegrunError(f"model {name!r} returns a {type(output).__name__}; task {task_name} needs a tensor")
    check_output(task_name, task, spec, name, tuple(output.shape))


def _summary(outcome: Outcome, rundir: RunDir, model: torch.nn.Module, targets: list, target_rows: list,
             thresholds: list[float], cfg: dict[str, Any]) -> dict[str, Any]:
    """summary.json's content for any outcome; the per-layer tables only for a completed run."""
    summary: dict[str, Any] = {"status": outcome.status}
    if outcome.message:
        summary["error"] = outcome.message
    last = rundir.rows[-1] if rundir.rows else None
    summary["final"] = last
    if last:
        summary["loss_breakdown"] = loss_breakdown(last, {t.name: last.get(lambda_column(t.name), t.lam) for t in targets})
    if outcome.evaluation:
        rundir.save_model(model)
        final = outcome.evaluation
        mark_targeted(final.activations, final.weights, targets)
        summary["sparsity"] = {"thresholds": thresholds, "weights": final.weights, "activations": final.activations}
    return summary | {"targets": target_rows, "config": cfg}


def _diagnostics(summary: Mapping[str, Any], rows: list[dict], task: Task, data: Data) -> list[dict[str, str]]:
    """The warnings of measure/diagnostics.py for a completed run, each also logged."""
    if summary["status"] != COMPLETED:
        return []
    figures = trivial_figures(task, data.test.x, data.test.y)
    chance = None if figures is None else Chance(split_figure("test", task.headline), figures[task.headline],
                                                 task.higher_is_better, task.trivial_is, figures["loss"])
    warnings = diagnose(rows, summary["targets"], summary.get("sparsity"), chance, summary["config"]["optimizer"])
    for warning in warnings:
        logging.getLogger(DIAGNOSTICS).warning("%s", warning["message"])
    return warnings


def _report(summary: Mapping[str, Any], path: Path, console) -> None:
    """Tables for a completed run; for any other, the reason and what to do next."""
    if summary["status"] == "completed":
        show_summary(summary, console)
    elif summary["status"] == "interrupted":
        log.warning("interrupted by %s: %s. Continue with: regrun resume %s", STOP.name, summary["error"], path)
    else:
        before = ("the last checkpoint holds finite weights from before it" if (path / CHECKPOINT).exists()
                  else "no checkpoint was written before it")
        log.error("diverged: %s; %s", summary["error"], before)
    log.info("run directory: %s", path)
