"""One Hydra job: a run in Hydra's output folder, or a `failed` record when it is refused.

Hydra calls `job` once per run, in this process or in a launcher's worker (joblib,
submitit, Ray); whatever happens, a sweep job leaves a summary in its folder.
"""

import itertools
import logging
import os
import sys
import threading
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regrun.errors import RegrunError
from regrun.training.signals import STOP, exit_code

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
    """
    from regrun.training.display import quiet_job
    from regrun.training.objective import check_objective, objective
    from regrun.training.run import run  # torch imports late, so `regrun --help` stays quick

    out = Path(HydraConfig.get().runtime.output_dir)
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    if threading.current_thread() is threading.main_thread():
        STOP.install()  # again here: launchers run jobs in processes of their own (joblib, submitit)
    if STOP():  # a stop signal ended an earlier job of this sweep: this one does not start
        not_started(cfg, out)
        return None
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:  # a missing value (???) or a broken ${...}
        return refused(str(err).splitlines()[0], out, sweeping)
    try:
        check_objective(plain)
        with quiet_job(job_label(out) if sweeping else None) as done:
            summary = continued(plain, out) if (out / "config.json").exists() else run(plain, out)
            done(summary)
        score = objective(plain, summary)
    except RegrunError as err:
        return refused(str(err), out, sweeping, plain)
    except Exception:
        if not sweeping:
            raise
        log.exception("job %s failed; the sweep goes on", out)
        return None
    if not sweeping and summary["status"] != "completed":
        raise SystemExit(exit_code(summary["status"]))
    return score


def job_label(out: Path) -> str:
    """'job #2 (outputs/multiruns/…/2)': Hydra's own launch line names the job's overrides."""
    return f"job #{HydraConfig.get().job.num} ({out})"


def continued(cfg: dict, out: Path) -> dict:
    """A job whose folder already holds a run: submitit requeues a preempted job into its
    folder, and a user may point hydra.run.dir at an old run. The same config continues
    from the checkpoint (a completed run is left as it is); another config is refused, so
    nothing written is overwritten."""
    import json

    from regrun.training.resume import differing_keys, prepare
    from regrun.training.run import run

    saved = json.loads((out / "config.json").read_text())
    if differing := differing_keys(saved, cfg):
        raise RegrunError(f"{out} already holds another run ({differing[0]} differs); choose another "
                          "hydra.run.dir, or continue that run with: regrun resume " + str(out))
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    if summary.get("status") == "completed":
        log.info("%s already holds this run, completed; nothing to do", out)
        return summary
    log.info("%s already holds this run, not finished: continuing it", out)
    cfg, checkpoint = prepare(out, [])
    return run(cfg, out, checkpoint, resume=True)


def refused(message: str, out: Path, sweeping: bool, cfg: dict | None = None) -> None:
    """A config error: one line and exit 2 in a single run; a `failed` job in a sweep."""
    from regrun.training.rundir import RunDir

    if not sweeping:
        fail(message)
    log.error("job failed: %s", message)
    if not (out / "summary.json").exists():  # run() writes it when it got that far
        RunDir(out).write_json("summary.json", {"status": "failed", "error": message, "config": cfg})


def not_started(cfg: DictConfig, out: Path) -> None:
    """Record a sweep job that a stop signal kept from starting, resumable from scratch."""
    from regrun.training.rundir import RunDir

    plain = OmegaConf.to_container(cfg, resolve=True)
    rundir = RunDir(out)
    rundir.write_json("config.json", plain)
    rundir.write_json("summary.json", {"status": "interrupted", "config": plain,
                                       "error": f"not started: {STOP.name} stopped the sweep before this job"})


def check_output_dirs(args: list[str]) -> None:
    """Refuse an output folder that cannot be created before Hydra tries (with a traceback)."""
    wanted = {arg.split("=", 1)[0]: arg.split("=", 1)[1] for arg in args
              if arg.startswith(("hydra.run.dir=", "hydra.sweep.dir="))}
    for key, value in wanted.items() or [("the current directory", ".")]:
        if "${" in value:
            continue  # resolved by Hydra; cannot be judged here
        existing = Path(value).absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            fail(f"{key}={value}: cannot create an output folder there ({existing} is not a writable "
                 "directory); allowed: a path under a writable directory")


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


