"""The `regrun` command: a Hydra app over the configs in conf/, plus subcommands.

    regrun model=mlp reg=l1_activations        one run
    regrun -m reg.targets.l1_activations.lambda=0,1e-4,1e-3   a sweep (Hydra multirun)
    regrun compare PATH...                     tables and plots over finished runs
    regrun resume RUN_DIR                      continue a run from its last checkpoint
"""

import atexit
import gc
import importlib
import itertools
import logging
import os
import sys
import threading
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from regrun.errors import RegrunError
from regrun.signals import STOP

log = logging.getLogger(__name__)


def conf_dir() -> Path:
    """The config folder: inside the installed package, or conf/ of a source checkout."""
    packaged = Path(__file__).parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf"


def job(cfg: DictConfig) -> float | None:
    """One Hydra job: resolve the config to plain data and run it in Hydra's output dir.

    A single run exits non-zero unless it completed. In a sweep a job never raises: a bad
    config or a crash is recorded as a `failed` run and the sweep goes on, so the summary
    at its end lists every job. Returns the objective for an optimizing sweeper (Optuna).
    """
    from regrun.objective import check_objective, objective
    from regrun.run import run  # torch imports late, so `regrun --help` stays quick

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
        summary = continued(plain, out) if (out / "config.json").exists() else run(plain, out)
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


def continued(cfg: dict, out: Path) -> dict:
    """A job whose folder already holds a run: submitit requeues a preempted job into its
    folder, and a user may point hydra.run.dir at an old run. The same config continues
    from the checkpoint (a completed run is left as it is); another config is refused, so
    nothing written is overwritten."""
    import json

    from regrun.resume import differing_keys, prepare
    from regrun.run import run

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


def exit_code(status: str) -> int:
    """0 completed; 2 failed (a config error); 128 + the signal's number when interrupted
    here by one; 1 for any other end (diverged, interrupted elsewhere, incomplete)."""
    if status == "interrupted" and STOP():
        return STOP.exit_code
    return {"completed": 0, "failed": 2}.get(status, 1)


def refused(message: str, out: Path, sweeping: bool, cfg: dict | None = None) -> None:
    """A config error: one line and exit 2 in a single run; a `failed` job in a sweep."""
    from regrun.rundir import RunDir

    if not sweeping:
        fail(message)
    log.error("job failed: %s", message)
    if not (out / "summary.json").exists():  # run() writes it when it got that far
        RunDir(out).write_json("summary.json", {"status": "failed", "error": message, "config": cfg})


def not_started(cfg: DictConfig, out: Path) -> None:
    """Record a sweep job that a stop signal kept from starting, resumable from scratch."""
    from regrun.rundir import RunDir

    plain = OmegaConf.to_container(cfg, resolve=True)
    rundir = RunDir(out)
    rundir.write_json("config.json", plain)
    rundir.write_json("summary.json", {"status": "interrupted", "config": plain,
                                       "error": f"not started: {STOP.name} stopped the sweep before this job"})


def fail(message: str) -> None:
    """Print a one-line error and exit 2 (a usage error, as argparse does)."""
    print(f"regrun: error: {message}", file=sys.stderr)
    raise SystemExit(2)


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


# Subcommand name → module with a `main(argv) -> int`. Hydra owns the rest of the command
# line, so these are dispatched before it parses sys.argv (hydra#409).
SUBCOMMANDS = {"compare": "regrun.compare", "resume": "regrun.resume"}


def main() -> None:
    """Entry point of the `regrun` console script."""
    # At exit, keep the garbage collector from walking torch's objects once more (files and
    # logs are closed explicitly, so no finalizer waits on it): the process ends 0.7 s sooner.
    atexit.register(gc.freeze)
    STOP.install()  # Ctrl-C / SIGTERM: stop at a step boundary with a checkpoint
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        command = importlib.import_module(SUBCOMMANDS[sys.argv[1]])
        raise SystemExit(command.main(sys.argv[2:]))
    check_output_dirs(sys.argv[1:])
    # config_path must be absolute: relative paths resolve against the package when the
    # app runs as a console script (hydra#2125).
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(job)
    try:
        app()
    except KeyboardInterrupt:  # a second Ctrl-C
        print("regrun: aborted by a second Ctrl-C; the last checkpoint is intact", file=sys.stderr)
        raise SystemExit(130) from None
    from regrun.sweep import STATUSES, release_workers

    release_workers()  # a joblib sweep's idle worker processes
    # STATUSES: the jobs of the sweep that just ended (none after a single run, which exits
    # non-zero by itself when it did not complete); a sweep exits as its worst job.
    worst = max(STATUSES, key=exit_code, default="completed")
    STATUSES.clear()
    if exit_code(worst):
        raise SystemExit(exit_code(worst))
