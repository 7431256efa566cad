"""One run, config to run directory: settings → model + targets → trainer → files.

`prepare` is the one way into a run, for the command, the Python API, `regrun resume` and
the members of a fused group: it reads the config once (jobs/settings.py), builds what
needs no data (task, model, targets, optimizer), loads the data, then writes the run's
first files; a bad config costs a second, not an epoch, and leaves nothing behind. A
folder that already holds the run is continued from its checkpoint: the model, targets
and data are built again from the run's config and the checkpoint puts back where
training stood. `train` then trains prepared runs, one alone or several as a fused group.
"""

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regrun.components.datasets import Data, DataSpec, Source, load_data, open_dataset
from regrun.components.models import build_model
from regrun.components.optimizers import implementation
from regrun.components.tasks import Task, check_output, resolve_task, task_summary, trivial_figures
from regrun.console import shared_console
from regrun.errors import RegrunError, contained
from regrun.jobs import signals
from regrun.jobs.display import (
    DIAGNOSTICS,
    GroupReporter,
    RichReporter,
    show_groups,
    show_pruning,
    show_summary,
    show_targets,
)
from regrun.jobs.objective import check_objective
from regrun.jobs.pruning import Training, evaluate_pruning, pruned_tensors
from regrun.jobs.settings import RunSettings, read_settings
from regrun.jobs.signals import STOP
from regrun.layout import (
    CHECKPOINT,
    COMPLETED,
    CONFIG,
    DENSITY,
    EPOCH,
    GROUPS,
    INTERRUPTED,
    LAYER_SPARSITY,
    LOG,
    PRUNE,
    SUMMARY,
    TARGETS,
    lambda_column,
    split_figure,
)
from regrun.measure.diagnostics import Chance, decay_by_parameter, diagnose
from regrun.measure.evaluation import Evaluation
from regrun.rundir.checkpoint import restore, save_checkpoint
from regrun.rundir.files import (
    RunDir,
    WriteFailed,
    append_traceback,
    environment,
    loss_breakdown,
    mark_targeted,
    record_failure,
)
from regrun.rundir.lock import one_writer
from regrun.rundir.resume import continuation, holds_run, read_summary
from regrun.rundir.trackers import Loggers, build_loggers, job_of, reach_loggers
from regrun.training.fused import FusedModel, not_fusable
from regrun.training.loop import Member, Outcome, TrainState, fit, steps_per_epoch
from regrun.training.param_groups import build_grouped_optimizer, describe_groups
from regrun.training.settings import TrainerSettings, pick_device
from regrun.training.step import SoloStep
from regrun.training.targets import Target, check_penalties, describe_targets, resolve_targets

log = logging.getLogger(__name__)
# The job log's line format (conf/hydra/job_logging/rich.yaml), for the members' regrun.log.
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class NotFusable(Exception):
    """A run that must train alone (its model draws random numbers, or its optimizer is not elementwise)."""


@dataclass
class Setup:
    """A run built from its settings, before any data: what training and its files need."""

    cfg: dict[str, Any]  # the plain config, as config.json holds it
    config: RunSettings  # the same, checked
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

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self.config.seed

    @property
    def settings(self) -> TrainerSettings:
        """The trainer's settings."""
        return self.config.trainer

    @property
    def thresholds(self) -> list[float]:
        """The |w| thresholds of the weight statistics."""
        return self.config.sparsity.thresholds


@dataclass(frozen=True)
class Tables:
    """The rows of targets.json and groups.json, which summary.json repeats."""

    targets: list[dict]
    groups: list[dict]


def build(cfg: dict[str, Any], config: RunSettings | None = None) -> Setup:
    """Build task, model, targets and optimizer from the run's seed; writes nothing.
    `config` is `cfg` read by `read_settings`, which this does when it is not given."""
    config = config or read_settings(cfg)
    device = pick_device(config.trainer.device)
    source = open_dataset(config.dataset)
    spec = source.spec
    task_name, task = resolve_task(config.task, spec)
    splits = ["val", "test"] if config.dataset.val_size is not None else ["test"]
    goal = check_objective(config.objective, task, splits)
    seed_everything(config.seed)
    model = build_model(config.model, spec.input_shape, task.num_outputs(spec)).to(device)
    check_model_output(model, config.model.name, task_name, task, spec)
    targets = resolve_targets(model, config.targets)
    optimizer, groups = build_grouped_optimizer(model, config.optimizer)
    _check_targets(targets, config.trainer.epochs, optimizer, config.optimizer.name)
    if config.prune.at_end:  # its selection refused now, not after training
        pruned_tensors(model, config.prune)
    example = torch.zeros((1, *spec.input_shape), device=device)
    check_penalties(targets, model, example)
    return Setup(cfg, config, device, source, task_name, task, goal, model, targets, optimizer, groups, example)


def record(setup: Setup, rundir: RunDir, console) -> Tables:
    """Show the targets and optimizer groups; write targets.json, groups.json and config.json."""
    target_rows = describe_targets(setup.targets, setup.model, setup.example)
    show_targets(target_rows, console)
    rundir.write_json(TARGETS, target_rows)
    group_rows = describe_groups(setup.groups, setup.optimizer)
    show_groups(group_rows, console)
    rundir.write_json(GROUPS, group_rows)
    rundir.write_json(CONFIG, setup.cfg)
    return Tables(target_rows, group_rows)


def training_data(setup: Setup) -> Data:
    """The dataset on the run's device; a batch larger than the training set is refused."""
    data = load_data(setup.config.dataset, setup.device, setup.source)
    batch_size = setup.settings.batch_size
    if batch_size > len(data.train):
        raise RegrunError(f"trainer.batch_size={batch_size} is larger than the training set "
                          f"({len(data.train)} samples); allowed: 1 to {len(data.train)}")
    return data


def describe_data(setup: Setup, data: Data) -> None:
    """Log what trains on what: dataset, device, task, sample counts, model and its size."""
    log.info("%s on %s, task %s: %d train / %s%d test samples; %s, %d parameters",
             data.name, setup.device, setup.task_name, len(data.train),
             f"{len(data.val)} validation / " if data.val else "", len(data.test), setup.config.model.name,
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


def step_recorder(rundir: RunDir, loggers: Loggers) -> Callable[[dict], None]:
    """A function that records a step's row (trainer.log_steps): steps.csv and the loggers."""

    def on_step(row: dict) -> None:
        rundir.append_steps(row)
        loggers.log_step(row)

    return on_step


def density_recorder(loggers: Loggers, targets: Sequence[Target]) -> Callable[[int, Evaluation], None]:
    """A function that gives the loggers the firing density of each unit of the modules whose
    outputs a target penalizes, from an epoch's evaluation (the trackers' histograms)."""
    modules = list(dict.fromkeys(m for t in targets if t.on_activations for m in t.modules))

    def on_evaluation(step: int, evaluation: Evaluation) -> None:
        found = {m: evaluation.activations[m][DENSITY] for m in modules if m in evaluation.activations}
        if found:
            loggers.log_densities(step, found)

    return on_evaluation


@dataclass
class Prepared:
    """A run built and recorded in its run directory, ready to train (alone or in a group)."""

    setup: Setup
    rundir: RunDir
    tables: Tables  # the rows of targets.json and groups.json
    data: Data
    loggers: Loggers
    state: TrainState  # fresh, or where its checkpoint stands when it continues
    resume: bool  # the folder held this run before: a failure leaves its files as they were
    started: float
    held: ExitStack = field(repr=False)  # its folder's lock and its loggers, until its training ends
    summary: dict[str, Any] | None = None  # summary.json's content, once it ended

    @property
    def label(self) -> str:
        """'3 (seed 1, l1_weights λ 0.001)': its folder's name, seed and λ of each target."""
        lams = ", ".join(f"{t.name} λ {t.lam:g}" for t in self.setup.targets)
        return f"{self.rundir.path.name} (seed {self.setup.seed}{', ' + lams if lams else ''})"


def prepare(cfg: dict[str, Any], out: Path, resumed: tuple[dict[str, Any], Mapping[str, Any] | None] | None = None,
            data_cache: dict[str, Data] | None = None, fused: bool = False) -> Prepared | None:
    """Build the run `cfg` says and record it in `out`; None when `out` holds this run,
    completed (nothing to do). A folder that holds this run, not finished, continues from
    its checkpoint; `resumed` gives the config and checkpoint to continue with instead
    (`regrun resume`). With `fused`, a run that cannot be fused raises `NotFusable` before
    anything is written; `data_cache` shares loaded data between members of a group.

    A bad config raises its `RegrunError` before anything is written. A failure once files
    are written is recorded in summary.json, as for a run that fails while it trains. The
    run holds `out`'s lock from here until its training ends (`train`): a folder another
    process writes is a `FolderInUse` error, and nothing is written into it.
    """
    started = time.perf_counter()
    with ExitStack() as held:
        held.enter_context(one_writer(out))
        if resumed is None and holds_run(out):
            if (resumed := continuation(cfg, out)) is None:
                log.info("%s already holds this run, completed; nothing to do", out)
                return None
            log.info("%s already holds this run, not finished: continuing it", out)
        checkpoint = None
        if resumed is not None:
            cfg, checkpoint = resumed
        with contained("the run's set-up"):  # a plugin's or the user's code exiting
            setup = build(cfg)
        if fused and (reason := not_fusable(setup.model, setup.optimizer)):
            raise NotFusable(reason)
        job = replace(job_of(out), continues=resumed is not None)  # a continued run's trackers continue theirs
        reach_loggers(setup.config.logger, job)  # their folders, their server: before any file
        with contained("loading the data"):
            data = _data(setup, data_cache if data_cache is not None else {})
        rundir = RunDir(out)
        if resumed is not None:
            keep_rows(rundir, checkpoint)
        try:
            tables = record(setup, rundir, shared_console())
            loggers = held.enter_context(closing(build_loggers(setup.config.logger, cfg, job, setup.model)))
            state = start_state(setup, checkpoint)
        except Exception as err:
            _record_failure(out, err, cfg, resumed is not None)
            raise
        describe_data(setup, data)
        if checkpoint:
            log.info("resuming at step %d (epoch %d of %d)", checkpoint["step"], state.epoch + 1, setup.settings.epochs)
        return Prepared(setup, rundir, tables, data, loggers, state, resumed is not None, started, held.pop_all())


def _data(setup: Setup, cache: dict[str, Data]) -> Data:
    """The run's data, loaded once per dataset node, device and batch size of a group."""
    key = json.dumps([setup.cfg["dataset"], str(setup.device), setup.settings.batch_size], sort_keys=True, default=str)
    if key not in cache:
        cache[key] = training_data(setup)
    return cache[key]


def _record_failure(out: Path, err: Exception, cfg: dict[str, Any], resume: bool) -> None:
    """A fresh run that fails says why in its summary; a failed continuation leaves the run's
    files as they were, unless a file could not be written (disk full): then it says so."""
    if not resume or isinstance(err, WriteFailed):
        record_failure(out, err, cfg)


def run(cfg: dict[str, Any], out: Path, checkpoint: Mapping[str, Any] | None = None,
        resume: bool = False) -> dict[str, Any]:
    """Train as `cfg` says and write the run directory `out`; returns the summary.

    With `resume`, `out` already holds this run: its metrics rows are kept, and training
    continues from `checkpoint` (or starts again when there is none). A folder that holds
    this run already, completed, is left as it is and its summary returned.
    """
    prepared = prepare(cfg, out, (cfg, checkpoint) if resume else None)
    if prepared is None:
        return read_summary(out)
    train([prepared])
    assert prepared.summary is not None  # train ends every member
    return prepared.summary


def train(group: Sequence[Prepared], fused: bool = False, stop: Callable[[], bool] | None = None) -> None:
    """Train prepared runs that stand at the same step: one alone on its own model, or a
    group (`fused`) as one vectorized model. Each one's summary is written (and kept in
    `summary`) when it ends; each one's lock and loggers are released at the end. If
    training fails, each run that had not ended records the failure, as `prepare` does."""
    with ExitStack() as held:
        for p in group:
            held.enter_context(p.held)
        try:
            # The loop polls for stop signals (between steps, between evaluation batches).
            with contained("training"), signals.STOP.polled():  # contained: what the loop does not place more closely
                _train(group, fused, stop or STOP)
        except Exception as err:
            # Code that raised (the model's, a plugin's, torch's) leaves its traceback in the
            # log; a refusal or a full disk is said in its one line.
            traced = not isinstance(err, RegrunError) or (err.__cause__ is not None and not isinstance(err, WriteFailed))
            for p in group:
                if p.summary is None:
                    if traced:
                        append_traceback(p.rundir.path / LOG, err)
                    _record_failure(p.rundir.path, err, p.setup.cfg, p.resume)
            if traced and isinstance(err, RegrunError) and len(group) == 1:
                raise RegrunError(f"{err} (traceback in {group[0].rundir.path / LOG})") from err
            raise


def _train(group: Sequence[Prepared], fused: bool, stop: Callable[[], bool]) -> None:
    console = shared_console()
    first = group[0].setup
    settings = first.settings
    per_epoch = steps_per_epoch(len(group[0].data.train), settings.batch_size)
    members = [_member(p, per_epoch, console, fused) for p in group]
    names = [t.name for t in first.targets]
    if fused:
        with member_logs(group):
            log.info("training in a fused group of %d runs (%s) as one vectorized model", len(group),
                     ", ".join(p.rundir.path.name for p in group))
        stepper: Any = FusedModel(members)
        reporter: RichReporter = GroupReporter(settings.epochs, names, list(first.task.figures), len(group), console)
    else:
        stepper = SoloStep(first.model, first.optimizer, first.targets)
        reporter = RichReporter(settings.epochs, names, list(first.task.figures), console)
    with reporter:
        fit(members, stepper, first.task, group[0].data, settings, first.thresholds, reporter, stop,
            first.config.sparsity.dead_window)


def _member(p: Prepared, per_epoch: int, console, fused: bool) -> Member:
    """The loop's view of a prepared run: its model, optimizer, targets and state, and where
    its rows, checkpoints and end go."""

    def done(outcome: Outcome) -> None:
        p.summary = finish(p.setup, outcome, p.rundir, p.tables, p.data, p.loggers, p.started, console)

    member = Member(p.setup.model, p.setup.optimizer, p.setup.targets, p.state, recorder(p.rundir, p.loggers),
                    saver(p.setup, p.rundir, p.state, per_epoch), done,
                    on_step=step_recorder(p.rundir, p.loggers) if p.setup.settings.log_steps else None,
                    on_evaluation=density_recorder(p.loggers, p.setup.targets))
    if fused:  # its lines go to its own regrun.log too: the group's members share one process
        member.label, member.context = p.label, lambda: member_log(p.rundir.path)
    return member


@contextmanager
def member_log(path: Path) -> Iterator[None]:
    """While in the block, log lines also go to the member's regrun.log (appended)."""
    handler = logging.FileHandler(path / LOG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


@contextmanager
def member_logs(group: Sequence[Prepared]) -> Iterator[None]:
    """While in the block, log lines go to every member's regrun.log."""
    with ExitStack() as logs:
        for p in group:
            logs.enter_context(member_log(p.rundir.path))
        yield


def keep_rows(rundir: RunDir, checkpoint: Mapping[str, Any] | None) -> None:
    """The metrics rows a continued run keeps: the checkpoint's, and those written after it
    (metrics.csv runs ahead of a checkpoint saved every few epochs); its steps.csv keeps the
    steps up to the checkpoint's, which training takes again from."""
    done = checkpoint["metrics"] if checkpoint else []
    last = done[-1][EPOCH] if done else 0
    rundir.rows = done + [row for row in rundir.read_metrics() if row[EPOCH] > last]
    rundir.trim_steps(checkpoint["step"] if checkpoint else 0)


def finish(setup: Setup, outcome: Outcome, rundir: RunDir, tables: Tables, data: Data, loggers: Loggers,
           started: float, console) -> dict[str, Any]:
    """Write summary.json for how training ended (model.pt too when it completed), give it
    to the loggers and report it."""
    summary = _summary(outcome, rundir, setup.model, setup.targets, tables.targets, setup.thresholds, setup.cfg)
    summary["groups"] = tables.groups
    summary["task"] = task_summary(setup.task_name, setup.task)
    summary["warnings"] = _diagnostics(summary, rundir.rows, setup, data)
    if setup.goal is not None:
        summary["objective"] = setup.goal
    summary["environment"] = environment(setup.device, setup.seed, time.perf_counter() - started,
                                         implementation(setup.optimizer))
    pruned = prune(setup, data, rundir) if summary["status"] == COMPLETED and setup.config.prune.at_end else None
    rundir.write_json(SUMMARY, summary)
    loggers.log_summary(summary)
    _report(summary, rundir.path, console)
    if pruned:
        show_pruning(pruned, split_figure("test", setup.task.headline), console)
    return summary


def prune(setup: Setup, data: Data, rundir: RunDir) -> list[dict[str, Any]]:
    """Evaluate the trained model pruned as its `prune` node says; writes prune.json."""
    rows = evaluate_pruning(setup.model, setup.task, data, setup.config.prune, training_of(setup), STOP)
    rundir.write_json(PRUNE, rows)
    return rows


def training_of(setup: Setup) -> Training:
    """How the run trains, as the fine-tuning of its pruned models repeats it."""
    return Training(setup.settings, setup.config.optimizer, setup.seed)


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
            log.warning("%s: proximal %s with %s: the threshold lr·λ is not scaled like Adam's per-coordinate "
                        "steps, so it zeroes far less than with optimizer=sgd at the same λ%s", t.name, t.penalty,
                        optimizer_name, "; proximal=adaptive scales it" if t.record.additive else "")


def check_model_output(model: torch.nn.Module, name: str, task_name: str, task: Task, spec: DataSpec) -> None:
    """One forward pass of an example batch (zeros, eval mode, no gradients) before training:
    the model must take the data's samples and give an output the task can compare."""
    parameter = next(model.parameters(), None)
    example = torch.zeros((2, *spec.input_shape), device=parameter.device if parameter is not None else None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), contained(f"model {name!r} forward on an example batch"):
            output = model(example)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RegrunError(f"model {name!r} cannot take samples of shape {spec.input_shape} from dataset "
                          f"{spec.name}: {reason}") from err
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise RegrunError(f"model {name!r} returns a {type(output).__name__}; task {task_name} needs a tensor")
    if output.ndim == 0 or output.shape[0] != len(example):
        raise RegrunError(f"model {name!r}: output shape {tuple(output.shape)} for a batch of {len(example)} samples; "
                          "its first dimension must be the batch's")
    if not output.is_floating_point():
        raise RegrunError(f"model {name!r} returns {output.dtype} outputs; task {task_name} needs floating point "
                          "(a loss cannot be differentiated through integers)")
    check_output(task_name, task, spec, name, tuple(output.shape))
    if not any(p.requires_grad for p in model.parameters()):
        raise RegrunError(f"model {name!r} has no trainable parameter (none requires a gradient); nothing would train")


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
        summary[LAYER_SPARSITY] = {"thresholds": thresholds, "weights": final.weights, "activations": final.activations}
    return summary | {"targets": target_rows, "config": cfg}


def _diagnostics(summary: Mapping[str, Any], rows: list[dict], setup: Setup, data: Data) -> list[dict[str, str]]:
    """The warnings of measure/diagnostics.py for a completed run, each also logged."""
    if summary["status"] != COMPLETED:
        return []
    task = setup.task
    figures = trivial_figures(task, data.test.x, data.test.y)
    chance = None if figures is None else Chance(split_figure("test", task.headline), figures[task.headline],
                                                 task.higher_is_better, task.trivial_is, figures["loss"])
    warnings = diagnose(rows, summary["targets"], summary.get(LAYER_SPARSITY), chance,
                        decay_by_parameter(summary["groups"]))
    for warning in warnings:
        logging.getLogger(DIAGNOSTICS).warning("%s", warning["message"])
    return warnings


def _report(summary: Mapping[str, Any], path: Path, console) -> None:
    """Tables for a completed run; for any other, the reason and what to do next."""
    if summary["status"] == COMPLETED:
        show_summary(summary, console)
    elif summary["status"] == INTERRUPTED:
        log.warning("interrupted by %s: %s. Continue with: regrun resume %s", STOP.name, summary["error"], path)
    else:
        before = ("the last checkpoint holds finite weights from before it" if (path / CHECKPOINT).exists()
                  else "no checkpoint was written before it")
        log.error("diverged: %s; %s", summary["error"], before)
    log.info("run directory: %s", path)
