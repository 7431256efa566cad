"""Several runs trained as one fused group: each config built as it is alone, one vectorized
training (regrun/training/fused.py), and each run's own directory written as alone.

A member's directory holds what a run alone writes (config.json, targets.json, metrics.csv,
checkpoint.pt in the solo format, summary.json, model.pt, its log lines in regrun.log), so
`regrun compare` reads it and `regrun resume` continues it alone. A group stopped part-way
continues as a group: each member whose folder holds its interrupted run is built from its
checkpoint, and members that stand at the same step train on together. Its `epoch_time_s`
is the group's training time for the epoch plus the member's own evaluation.
"""

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regrun.components.datasets import Data
from regrun.console import shared_console
from regrun.jobs.display import GroupReporter
from regrun.jobs.run import (
    Setup,
    Tables,
    build,
    describe_data,
    finish,
    keep_rows,
    record,
    recorder,
    saver,
    start_state,
    training_data,
)
from regrun.jobs.signals import STOP
from regrun.layout import LOG
from regrun.rundir.files import RunDir, WriteFailed, record_failure
from regrun.rundir.lock import one_writer
from regrun.rundir.resume import continuation, holds_run
from regrun.rundir.trackers import Loggers, build_loggers
from regrun.training.fused import FusedModel, available_bytes, chunk_size, member_bytes, not_fusable
from regrun.training.loop import Member, Outcome, TrainState, fit, steps_per_epoch

log = logging.getLogger(__name__)
# The job log's line format (conf/hydra/job_logging/rich.yaml), for the members' regrun.log.
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


class NotFusable(Exception):
    """A run that must train alone (its model draws random numbers, or its optimizer is not elementwise)."""


@dataclass
class Prepared:
    """A member built and recorded in its run directory, waiting for its group to train."""

    setup: Setup
    rundir: RunDir
    tables: Tables  # the rows of targets.json and groups.json
    data: Data
    loggers: Loggers
    state: TrainState  # fresh, or where its checkpoint stands when it continues
    started: float
    held: ExitStack = field(repr=False)  # its folder's lock and its loggers, until its group ends
    summary: dict[str, Any] | None = None  # summary.json's content, once it ended

    @property
    def label(self) -> str:
        """'3 (seed 1, l1_weights λ 0.001)': its folder's name, seed and λ of each target."""
        lams = ", ".join(f"{t.name} λ {t.lam:g}" for t in self.setup.targets)
        return f"{self.rundir.path.name} (seed {self.setup.seed}{', ' + lams if lams else ''})"


def prepare(cfg: dict[str, Any], out: Path, data_cache: dict[str, Data]) -> Prepared:
    """Build a run as it is alone and write its config.json and targets.json into `out`; a
    folder that holds this run, interrupted, is continued from its checkpoint.

    Raises what the run alone would raise for a bad config (before writing anything), and
    `NotFusable` for a run that must train alone (or, completed, has nothing to do); a
    failure once files are written is also recorded in the folder's summary.json, as a run
    alone records it. The data is loaded once per dataset node. The member holds `out`'s
    lock from here until its group ends (`train_group`): a folder another process writes is
    a `FolderInUse` error, and nothing is written into it.
    """
    started = time.perf_counter()
    with ExitStack() as held:
        held.enter_context(one_writer(out))
        checkpoint, resume = None, holds_run(out)
        if resume:
            if (resumed := continuation(cfg, out)) is None:
                raise NotFusable("its folder holds this run, completed")
            cfg, checkpoint = resumed
        setup = build(cfg)
        if reason := not_fusable(setup.model, setup.optimizer):
            raise NotFusable(reason)
        key = json.dumps([cfg["dataset"], str(setup.device), setup.settings.batch_size], sort_keys=True, default=str)
        if key not in data_cache:
            data_cache[key] = training_data(setup)
        rundir = RunDir(out)
        if resume:
            keep_rows(rundir, checkpoint)
        try:
            tables = record(setup, rundir, shared_console())
            loggers = held.enter_context(closing(build_loggers(cfg, out, setup.model)))
            state = start_state(setup, checkpoint)
        except Exception as err:  # files are written: say why the run ends here, as a run alone does
            if not resume or isinstance(err, WriteFailed):
                record_failure(out, err, cfg)
            raise
        describe_data(setup, data_cache[key])
        if checkpoint:
            log.info("resuming at step %d (epoch %d of %d)", checkpoint["step"], state.epoch + 1,
                     setup.settings.epochs)
        return Prepared(setup, rundir, tables, data_cache[key], loggers, state, started, held.pop_all())


def group_size(first: Prepared, max_models: int | None) -> int:
    """How many members train at once: `max_models` at most, and as many as fit in half the
    free memory by `member_bytes`' estimate, which is logged."""
    setup = first.setup
    per_member = member_bytes(setup.model, setup.optimizer, setup.example, setup.settings.batch_size)
    free = available_bytes(setup.device)
    size = chunk_size(per_member, free, max_models)
    log.info("fused training: about %.1f MiB per member (parameters, gradients, optimizer state, one batch's "
             "activations); %s free on %s; at most %s members at once%s", per_member / 2**20,
             f"{free / 2**30:.1f} GiB" if free else "unknown", setup.device, size if size < 1 << 30 else "all",
             f" (max_models={max_models})" if max_models else "")
    return size


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


def train_group(group: Sequence[Prepared], stop: Callable[[], bool] = STOP) -> None:
    """Train the prepared members as one vectorized model; each one's summary is written
    (and kept in `summary`) when it ends. Each member's folder lock and loggers are released
    when the group ends; if training fails, each member that had not ended records the
    failure in its summary.json, as a run alone does."""
    with ExitStack() as held:
        for p in group:
            held.enter_context(p.held)
        try:
            _train_group(group, stop)
        except Exception as err:
            for p in group:
                if p.summary is None:
                    record_failure(p.rundir.path, err, p.setup.cfg)
            raise


def _train_group(group: Sequence[Prepared], stop: Callable[[], bool]) -> None:
    """Train the members that stand at the same step together, one such group after another."""
    at: dict[tuple[int, int], list[Prepared]] = {}
    for p in group:
        at.setdefault(p.state.position, []).append(p)
    for together in at.values():
        _train_together(together, stop)


def _train_together(group: Sequence[Prepared], stop: Callable[[], bool]) -> None:
    console = shared_console()
    first = group[0].setup
    settings = first.settings
    per_epoch = steps_per_epoch(len(group[0].data.train), settings.batch_size)
    members = []
    for p in group:
        def done(outcome: Outcome, p: Prepared = p) -> None:
            p.summary = finish(p.setup, outcome, p.rundir, p.tables, p.data, p.loggers, p.started, console)

        members.append(Member(p.setup.model, p.setup.optimizer, p.setup.targets, p.state,
                              recorder(p.rundir, p.loggers), saver(p.setup, p.rundir, p.state, per_epoch), done,
                              p.label, lambda p=p: member_log(p.rundir.path)))
    with ExitStack() as every_log:
        for member in members:
            every_log.enter_context(member.context())
        log.info("training in a fused group of %d runs (%s) as one vectorized model", len(group),
                 ", ".join(p.rundir.path.name for p in group))
    names = [t.name for t in first.targets]
    with GroupReporter(settings.epochs, names, list(first.task.figures), len(group), console) as reporter:
        fit(members, FusedModel(members), first.task, group[0].data, settings, first.thresholds, reporter, stop)
