"""`hydra/launcher=fused`: a sweep's jobs that differ only in λ and seed, trained as one
vectorized model per group; every other job runs as Hydra's basic launcher runs it.

The plugin class lives in hydra_plugins/regrun_fused_launcher/ (where Hydra looks for
plugins); this is its work. Jobs fuse when their resolved configs are equal but for `seed`
and the `lambda` of each target; jobs that differ in anything else (learning rate, weight
decay, model, epochs, ...) form groups of their own. A job runs alone when it is the only
one of its kind, when its folder already holds a run (it continues as the basic launcher
continues it), when its config is refused (the solo path then reports it as it always
does), or when it cannot be fused (dropout, an optimizer that is not elementwise).

Each job, fused or not, goes through Hydra's `run_job`: its folder gets `.hydra/`, its log
and the callbacks' calls as with the basic launcher. A fused job's `run_job` builds and
records the run; its training happens when its group is full, and its return value (the
objective for an optimizing sweeper) is set once it ended.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from regrun.cli.hydra_files import foreign
from regrun.cli.job import job, job_label, not_started
from regrun.config import flatten, to_plain
from regrun.errors import RegrunError, positive_int
from regrun.jobs.settings import fusable_keys, read_settings
from regrun.layout import INTERRUPTED, SUMMARY
from regrun.rundir.resume import holds_run

log = logging.getLogger(__name__)


@dataclass
class SweepJob:
    """One job of the sweep: its number, its config (Hydra's node included) and its group."""

    num: int
    config: DictConfig
    key: str | None  # equal for jobs that fuse; None: the job runs alone


def check_max_models(value: Any) -> int | None:
    """`hydra.launcher.max_models`: null (as many as fit in memory) or a positive integer."""
    if value is None:
        return None
    positive_int("hydra.launcher.max_models", value)
    return value


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Hydra's `Launcher.launch` for the fused launcher: one JobReturn per job, in job order."""
    from regrun.cli.job import fail

    try:
        max_models = check_max_models(launcher.max_models)
    except RegrunError as err:
        fail(str(err))
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    jobs = [_sweep_job(launcher, initial_job_idx + i, overrides) for i, overrides in enumerate(job_overrides)]
    groups = _groups(jobs)
    log.info("Launching %d jobs: %s", len(jobs), ", ".join(
        f"#{g[0].num} alone" if len(g) == 1 else f"#{'/'.join(str(j.num) for j in g)} fused" for g in groups))
    returns: dict[int, JobReturn] = {}
    for group in groups:
        if len(group) == 1:
            returns[group[0].num] = _run(launcher, group[0], launcher.task_function)
        else:
            returns |= _run_group(launcher, group, max_models)
    return [returns[j.num] for j in jobs]


def _sweep_job(launcher: Any, num: int, overrides: Sequence[str]) -> SweepJob:
    """Load a job's config as the basic launcher does, and find what it may fuse with."""
    log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(config):
        config.hydra.job.id = num
        config.hydra.job.num = num
    return SweepJob(num, config, fusion_key(config))


def fusion_key(config: DictConfig) -> str | None:
    """The job's resolved config without the keys fused runs may differ in (its seed and λ
    values: jobs/settings.py `fusable_keys`), as text: jobs with equal keys
    fuse. None when the job must run alone: a config that does not resolve (the job reports
    it) or a folder that holds a run other than an interrupted one (the job continues it or
    reports it). Interrupted members of a group fuse again and continue together."""
    try:
        out = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        task = OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"])
        plain = to_plain(task, throw_on_missing=True)
    except OmegaConfBaseException:
        return None
    if holds_run(out) and not _interrupted(out):
        return None
    try:
        fusable = fusable_keys(read_settings(plain))
    except RegrunError:
        return None  # a refused config: the job alone reports it
    flat = {k: v for k, v in flatten(plain).items() if k not in fusable}
    return json.dumps(sorted(flat.items()), default=str)


def _interrupted(out: Path) -> bool:
    """Whether the run in `out` was interrupted (a damaged folder is not: the job alone reports it)."""
    from regrun.rundir.resume import read_summary

    try:
        return read_summary(out).get("status") == INTERRUPTED
    except RegrunError:
        return False


def _groups(jobs: Sequence[SweepJob]) -> list[list[SweepJob]]:
    """Jobs with equal keys together, in the order of their first job; each job without a key alone."""
    groups: dict[str, list[SweepJob]] = {}
    for j in jobs:
        groups.setdefault(j.key if j.key is not None else f"alone {j.num}", []).append(j)
    return list(groups.values())


def _run(launcher: Any, sweep_job: SweepJob, task_function: Any) -> JobReturn:
    """`task_function` as one Hydra job in the job's folder, as the basic launcher runs it."""
    ret = run_job(hydra_context=launcher.hydra_context, task_function=task_function, config=sweep_job.config,
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return ret


def _run_group(launcher: Any, group: Sequence[SweepJob], max_models: int | None) -> dict[int, JobReturn]:
    """Prepare each job of a group in its own Hydra job, and train them in chunks that fit."""
    from regrun.jobs.display import quiet_console
    from regrun.jobs.fused_group import group_size, prepare_member, train_group
    from regrun.jobs.run import NotFusable, Prepared
    from regrun.rundir.files import record_failure

    data_cache: dict = {}
    returns: dict[int, JobReturn] = {}
    chunk: list[tuple[JobReturn, Prepared]] = []
    labels: dict[int, str] = {}  # id of a prepared member → its job's label, for its end line
    size = None
    console: list[logging.Handler] = []  # the job logging's console handler, for the lines of training

    def prepare_or_run(cfg: DictConfig) -> Any:
        """A prepared member; or, for a job that cannot be fused, what the job alone returns."""
        from regrun.jobs.signals import STOP, StopNow

        out = Path(HydraConfig.get().runtime.output_dir)
        if STOP() or foreign(out, cfg):
            return job(cfg)  # recorded as not started, or refused, as a job alone is
        plain = None
        fresh = not holds_run(out)
        try:
            plain = to_plain(cfg, throw_on_missing=True)
            # as a quiet sweep job: its tables go to its regrun.log; a stop signal unwinds its start-up
            with quiet_console(), STOP.immediate():
                prepared = prepare_member(plain, out, data_cache)
            if prepared is None:  # its folder holds this run, completed: the job alone says so
                return job(cfg)
        except StopNow:
            if fresh:
                not_started(plain, out)
            return None
        except NotFusable as err:
            log.info("this job trains alone: %s", err)
            return job(cfg)
        except (RegrunError, OmegaConfBaseException) as err:
            if not (out / SUMMARY).exists():  # refused before prepare recorded anything: the job alone reports it
                return job(cfg)
            log.error("job failed: %s", err)  # prepare recorded it in the job's summary.json
            return None
        except Exception as err:  # a bug: recorded and logged as a crashing job alone is; the sweep goes on
            log.exception("job %s failed while its fused group was prepared; the sweep goes on", out)
            if not (out / SUMMARY).exists():
                record_failure(out, err, plain)
            return None
        console[:] = [h for h in logging.getLogger().handlers if not isinstance(h, logging.FileHandler)]
        labels[id(prepared)] = job_label(out)
        return prepared

    for sweep_job in group:
        ret = _run(launcher, sweep_job, prepare_or_run)
        returns[sweep_job.num] = ret
        if ret.status == JobStatus.COMPLETED and isinstance(ret.return_value, Prepared):
            chunk.append((ret, ret.return_value))
            size = size or group_size(ret.return_value, max_models)
        if chunk and len(chunk) == size:
            _train_chunk(chunk, train_group, console, labels)
            chunk = []
    if chunk:
        _train_chunk(chunk, train_group, console, labels)
    return returns


def _train_chunk(chunk: Sequence[tuple[JobReturn, Any]], train_group: Any, console: list[logging.Handler],
                 labels: dict[int, str]) -> None:
    """Train prepared members together; each job's return value becomes its objective.

    As in a quiet sweep, the console gets one line when the group starts and one per job
    when it ended; the other log lines go to each member's regrun.log.
    """
    from regrun.console import shared_console
    from regrun.jobs.display import job_ended, quiet_console
    from regrun.jobs.objective import objective

    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers = console[:]
    shared_console().print(f"training as one fused group: {', '.join(labels[id(p)] for _, p in chunk)}",
                           highlight=False, soft_wrap=True)
    try:
        with quiet_console():
            train_group([prepared for _, prepared in chunk])
    finally:
        root.handlers = handlers
    for ret, prepared in chunk:
        summary = prepared.summary
        job_ended(labels[id(prepared)], summary)
        ret.return_value = objective(summary) if summary else None
