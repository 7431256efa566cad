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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from regrun.cli.hydra_files import detach_job_log, discard_job_files, foreign, resolved
from regrun.errors import RegrunError
from regrun.jobs.signals import STOP, StopNow, exit_code
from regrun.layout import COMPLETED, CONFIG, INTERRUPTED, SUMMARY
from regrun.rundir.lock import FolderInUse, holder, one_writer
from regrun.rundir.resume import holds_run, read_summary

log = logging.getLogger(__name__)


def fail(message: str) -> None:
    """Print a one-line error and exit 2 (a usage error, as argparse does)."""
    print(f"regrun: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def job(cfg: DictConfig) -> float | None:
    """The command's Hydra job: run the config in Hydra's output dir (`run_job_config`).

    A single run exits non-zero unless it completed: 2 with one line when it is refused.
    In a sweep a job never raises: a bad config or a crash is recorded as a `failed` run
    and the sweep goes on, so the summary at its end lists every job. Returns the
    objective for an optimizing sweeper (Optuna).
    """
    try:
        ended = run_job_config(cfg)
    except RegrunError as err:  # a single run refused
        fail(str(err))
    if not ended.sweeping and ended.summary is not None and ended.summary["status"] != COMPLETED:
        raise SystemExit(exit_code(ended.summary["status"]))
    return ended.score


@dataclass
class Ended:
    """How a job ended: its summary (None for a sweep job refused or crashed) and its objective."""

    summary: dict[str, Any] | None
    score: float | None = None
    sweeping: bool = False


def run_job_config(cfg: DictConfig) -> Ended:
    """One Hydra job, for the command (`job`) and the Python API: resolve the config to
    plain data and run it in Hydra's output dir, or continue the run the folder holds.

    A refused single run raises its one-line `RegrunError`; a refused sweep job is
    recorded and logged. The job holds its folder's lock throughout; a folder another
    process writes, or one holding another run, is refused and not a byte is written
    into it (Hydra wrote nothing there either: see cli/hydra_files.py). A stop signal
    before training starts ends the run `interrupted`, resumable from its first step.
    """
    out = Path(HydraConfig.get().runtime.output_dir)
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    if threading.current_thread() is threading.main_thread():
        STOP.install()  # again here: launchers run jobs in processes of their own (joblib, submitit)
    refusing = foreign(out, cfg)
    if refusing:
        detach_job_log(out)  # the refusal's lines go to the console, not to the other run's log
    try:
        with one_writer(out, keep=bool(refusing)):
            return Ended(*_locked_job(cfg, out, sweeping), sweeping=sweeping)
    except FolderInUse as err:
        refused(str(err), out, sweeping, record=False)
        return Ended(None, sweeping=sweeping)


def _locked_job(cfg: DictConfig, out: Path, sweeping: bool) -> tuple[dict[str, Any] | None, float | None]:
    from regrun.jobs.display import quiet_job
    from regrun.jobs.objective import objective  # torch imports late, so `regrun --help` stays quick

    # A folder that held a run before this job (a requeue, an old hydra.run.dir) is never
    # marked failed by it: its files stay as they were.
    fresh = not holds_run(out)
    try:
        plain = resolved(cfg)
    except RegrunError as err:  # a missing value (???) or a broken ${...}
        refused(str(err), out, sweeping, record=fresh)
        return None, None
    pending = STOP()  # a stop signal ended an earlier job of this sweep: this one does not start
    try:
        # In start-up a stop signal unwinds it at once (the training loop polls for it).
        with STOP.immediate(), quiet_job(job_label(out) if sweeping else None) as done:
            summary = run_or_continue(plain, out)
            done(summary)
    except StopNow:  # before training started: a continued run's files stay as they were
        return (not_started(plain, out, sweeping and pending) if fresh else read_summary(out)), None
    except RegrunError as err:
        refused(str(err), out, sweeping, plain, record=fresh)
        return None, None
    except Exception:
        if not sweeping:
            raise
        log.exception("job %s failed; the sweep goes on", out)
        return None, None
    return summary, objective(summary)


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
    """A config error: a `RegrunError` in a single run (the command says it in one line and
    exits 2; a folder that held no run is left as it was found); a `failed` job in a sweep, recorded in its folder when `record` (never in a
    folder holding another run)."""
    from regrun.rundir.files import record_failure

    if not sweeping:
        if record:  # a refused run leaves no trace: Hydra's files go, the folder is as it was found
            discard_job_files(out)
            with one_writer(out, keep=True):
                pass
        raise RegrunError(message)
    log.error("job failed: %s", message)
    if record and not (out / SUMMARY).exists():  # run() writes it when it got that far
        record_failure(out, message, cfg)


def not_started(cfg: Any, out: Path, earlier: bool = False) -> dict[str, Any]:
    """Record a run that a stop signal kept from training (`interrupted`, no checkpoint:
    `regrun resume` starts it from its first step); `earlier`: the signal stopped an
    earlier job of its sweep. Returns its summary."""
    from regrun.rundir.files import RunDir

    rundir = RunDir(out)
    why = f"{STOP.name} stopped the sweep before this job" if earlier else \
        f"{STOP.name} stopped it before training started"
    summary = {"status": INTERRUPTED, "config": cfg, "error": f"not started: {why}"}
    with STOP.polled():  # written whole, whatever comes next
        rundir.write_json(CONFIG, cfg)
        rundir.write_json(SUMMARY, summary)
    log.warning("interrupted by %s before training started. Continue with: regrun resume %s", STOP.name, out)
    return summary


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
    # Left as found (no lock file, no folder) unless the job goes on to write a run there.
    return one_writer(Path(dirs["hydra.run.dir"]), keep=True) if "hydra.run.dir" in dirs else nullcontext()


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


