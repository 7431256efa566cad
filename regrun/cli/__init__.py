"""The `regrun` command: a Hydra app over the configs in conf/, plus subcommands.

    regrun model=mlp reg=l1_activations        one run
    regrun -m reg.targets.l1_activations.lambda=0,1e-4,1e-3   a sweep (Hydra multirun)
    regrun compare PATH...                     tables and plots over finished runs
    regrun resume RUN_DIR                      continue a run from its last checkpoint
"""

import atexit
import gc
import importlib
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

import hydra
from omegaconf import OmegaConf

from regrun.cli.job import check_output_dirs, claim_output_dir, fail, job
from regrun.errors import RegrunError
from regrun.jobs.signals import STOP, exit_code
from regrun.layout import COMPLETED


def conf_dir() -> Path:
    """The config folder: inside the installed package, or conf/ of a source checkout."""
    packaged = Path(__file__).parent.parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent.parent / "conf"


# What `regrun --help` lists as registered: (words, module, registry). A registry that is a
# `Registry` also loads the plugins of its entry-point group.
REGISTRIES = (
    ("models (model.name)", "regrun.components.models", "MODELS"),
    ("datasets (dataset.name)", "regrun.components.datasets", "DATASETS"),
    ("tasks (task.name)", "regrun.components.tasks", "TASKS"),
    ("penalties (reg.targets.*.penalty)", "regrun.components.penalties", "PENALTIES"),
    ("optimizers (optimizer.name)", "regrun.components.optimizers", "OPTIMIZERS"),
)


def registered() -> str:
    """The registered names of each component, one line each, for `regrun --help`.

    The registries live in modules that import torch (about 2 s), so this runs only when
    the help text is printed: it is the `${regrun_registered:}` resolver of its template.
    """
    lines = []
    for words, module, name in REGISTRIES:
        registry = getattr(importlib.import_module(module), name)
        group = getattr(registry, "entry_point_group", None)
        lines.append(f"{words}: {', '.join(registry)}" + (f"   [plugins: entry points {group}]" if group else ""))
    return "\n".join(lines)


OmegaConf.register_new_resolver("regrun_registered", registered)

# Subcommand name → module with a `main(argv) -> int`. Hydra owns the rest of the command
# line, so these are dispatched before it parses sys.argv (hydra#409).
SUBCOMMANDS = {"compare": "regrun.cli.compare", "resume": "regrun.cli.resume"}


def main() -> None:
    """Entry point of the `regrun` console script."""
    # At exit, keep the garbage collector from walking torch's objects once more (files and
    # logs are closed explicitly, so no finalizer waits on it): the process ends 0.7 s sooner.
    atexit.register(gc.freeze)
    STOP.install()  # Ctrl-C / SIGTERM: stop at a step boundary with a checkpoint
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        command = importlib.import_module(SUBCOMMANDS[sys.argv[1]])
        raise SystemExit(command.main(sys.argv[2:]))
    # A full disk makes every log line fail: say it once (the error's one line), never as
    # one traceback per log record.
    logging.raiseExceptions = False
    check_output_dirs(sys.argv[1:])
    # config_path must be absolute: relative paths resolve against the package when the
    # app runs as a console script (hydra#2125).
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(job)
    with ExitStack() as held:
        try:
            held.enter_context(claim_output_dir(sys.argv[1:]))
        except RegrunError as err:
            fail(str(err))
        try:
            app()
        except KeyboardInterrupt:  # a second Ctrl-C
            print("regrun: aborted by a second Ctrl-C; the last checkpoint is intact", file=sys.stderr)
            raise SystemExit(130) from None
    from regrun.analysis.sweep import STATUSES, release_workers

    release_workers()  # a joblib sweep's idle worker processes
    # STATUSES: the jobs of the sweep that just ended (none after a single run, which exits
    # non-zero by itself when it did not complete); a sweep exits as its worst job.
    worst = max(STATUSES, key=exit_code, default=COMPLETED)
    STATUSES.clear()
    if exit_code(worst):
        raise SystemExit(exit_code(worst))
