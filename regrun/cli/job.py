"""One Hydra job: a run in Hydra's output folder, or a `failed` record when it is refused.

Hydra calls `job` once per run, in this process or in a launcher's worker (joblib,
submitit, Ray); whatever happens, a sweep job leaves a summary in its folder.
"""

import itertools
import logging
import os
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regrun.errors import RegrunError
from regrun.jobs.signals import STOP, exit_code
from regrun.layout import COMPLETED, CONFIG, INTERRUPTED, SUMMARY
from regrun.rundir.lock import FolderInUse, holder, one_writer
from regrun.rundir.resume import holds_run

log = logging.getLogger(__name__)


def fail(message: str) -> None:
    """Print a one-line error and exit 2 (a usage error, as argparse does)."""
    print(f"regrun: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def job(cfg: DictConfig) -> float | None:
    """One Hydra job: resolve the config to plain data and run it in Hydra's output dir.

    A single run exits non-zero unless it completed. In a sweep a job never raises: a bad
    config or a crash is recorded as a `failed` run and the sweep goes on, so the summary
    at its end lists every job. Returns the objective for an optimizing sweeper (Optuna).
    The job holds its folder's lock throughout; a folder another process writes is
    refused, and not a byte is written into it.
    """
    out = Path(HydraConfig.get().runtime.output_dir)
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    if threading.current_thread() is threading.main_thread():
        STOP.install()  # again here: launchers run jobs in processes of their own (joblib, submitit)
    try:
        with one_writer(out):
            return _locked_job(cfg, out, sweeping)
    except FolderInUse as err:
        return refused(str(err), out, sweeping, record=False)


def _locked_job(cfg: DictConfig, out: Path, sweeping: bool) -> float | None:
    from regrun.jobs.display import quiet_job
    from regrun.jobs.objective import objective  # torch imports late, so `regrun --help` stays quick

    # A folder that held a run before this job (a requeue, an old hydra.run.dir) is never
    # marked failed by it: its files stay as they were.
    fresh = not holds_run(out)
    if STOP():  # a stop signal ended an earlier job of this sweep: this one does not start
        if fresh:
            not_started(cfg, out)
        return None
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:  # a missing value (???) or a broken ${...}
        return refused(str(err).splitlines()[0], out, sweeping, record=fresh)
    try:
        with quiet_job(job_label(out) if sweeping else None) as done:
            summary = run_or_continue(plain, out)
            done(summary)
        score = objective(summary)
    except RegrunError as err:
        return refused(str(err), out, sweeping, plain, record=fresh)
    except Exception:
        if not sweeping:
            raise
        log.exception("job %s failed; the sweep goes on", out)
        return None
    if not sweeping and summary["status"] != COMPLETED:
        raise SystemExit(exit_code(summary["status"]))
    return score


def job_label(out: Path) -> str:
    """'job #2 (outputs/multiruns/…/2)': Hydra's own launch line names the job's overrides."""
    return f"job #{HydraConfig.get().job.num} ({out})"


def run_or_continue(cfg: dict, out: Path) -> dict:
    """Run `cfg` in `out`; a folder that already holds this run continues it (submitit
    requeues a preempted job into its folder, a user may point hydra.run.dir at an old
    run), from its checkpoint, or leaves it as it is when it completed; another config is
    refused, so nothing written is overwritten. Returns the summary."""
    from regrun.jobs.run import run

    return run(cfg, out)


def refused(message: str, out: Path, sweeping: bool, cfg: dict | None = None, record: bool = True) -> None:
    """A config error: one line and exit 2 in a single run; a `failed` job in a sweep,
    recorded in its folder when `record` (never in a folder holding another run)."""
    from regrun.rundir.files import record_failure

    if not sweeping:
        fail(message)
    log.error("job failed: %s", message)
    if record and not (out / SUMMARY).exists():  # run() writes it when it got that far
        record_failure(out, message, cfg)


def not_started(cfg: DictConfig, out: Path) -> None:
    """Record a sweep job that a stop signal kept from starting, resumable from scratch."""
    from regrun.rundir.files import RunDir

    plain = OmegaConf.to_container(cfg, resolve=True)
    rundir = RunDir(out)
    rundir.write_json(CONFIG, plain)
    rundir.write_json(SUMMARY, {"status": INTERRUPTED, "config": plain,
                                "error": f"not started: {STOP.name} stopped the sweep before this job"})


# Flags with which Hydra prints something and runs no job: no folder is claimed for them.
INFO_FLAGS = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--resolve", "-p", "--package",
              "--shell-completion", "-sc")


def _output_dirs(args: list[str]) -> dict[str, str]:
    """The output folders given on the command line: {"hydra.run.dir": "DIR", ...}."""
    return {arg.split("=", 1)[0]: arg.split("=", 1)[1] for arg in args
            if arg.startswith(("hydra.run.dir=", "hydra.sweep.dir="))}


def check_output_dirs(args: list[str]) -> None:
    """Refuse an output folder that cannot be created before Hydra tries (with a traceback)."""
    for key, value in _output_dirs(args).items() or [("the current directory", ".")]:
        if "${" in value:
            continue  # resolved by Hydra; cannot be judged here
        existing = Path(value).absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            fail(f"{key}={value}: cannot create an output folder there ({existing} is not a writable "
                 "directory); allowed: a path under a writable directory")


def claim_output_dir(args: list[str]) -> AbstractContextManager:
    """The lock of an explicit `hydra.run.dir`, taken before Hydra writes .hydra/ and its log
    into the folder, so a second writer is refused before it touches a byte of the first's.

    A sweep into an explicit `hydra.sweep.dir` is refused when one of the folders there is
    being written. Default folders are fresh (`unique_dir`): the job's own lock suffices.
    """
    dirs = {key: value for key, value in _output_dirs(args).items() if "${" not in value}
    if any(arg.split("=", 1)[0] in INFO_FLAGS for arg in args):
        return nullcontext()
    if "-m" in args or "--multirun" in args:
        if "hydra.sweep.dir" in dirs:
            _refuse_live_jobs(Path(dirs["hydra.sweep.dir"]))
        return nullcontext()
    return one_writer(Path(dirs["hydra.run.dir"])) if "hydra.run.dir" in dirs else nullcontext()


def _refuse_live_jobs(sweep: Path) -> None:
    try:
        folders = sorted(p for p in sweep.iterdir() if p.is_dir())
    except OSError:
        return  # no sweep there yet
    for folder in folders:
        if who := holder(folder):
            raise FolderInUse(f"hydra.sweep.dir={sweep}: its job folder {folder} is in use by another regrun "
                              f"process ({who}); wait until it ends, or choose another hydra.sweep.dir")


def unique_dir(path: str) -> str:
    """Claim a fresh directory named `path`, or `path-1`, `path-2`, … if it is taken.

    Hydra's run and sweep directories are named by the second; two runs started within
    the same second would share one. mkdir is atomic, so each run claims its own. The
    resolver is cached, so every use within one config gets the same directory.
    """
    wanted = Path(path)
    wanted.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        candidate = wanted if n == 0 else wanted.with_name(f"{wanted.name}-{n}")
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True)


