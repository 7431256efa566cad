"""The `regrun` command: a Hydra app over the configs in conf/, plus subcommands.

    regrun model=mlp reg=l1_activations        one run
    regrun -m reg.targets.l1_activations.lambda=0,1e-4,1e-3   a sweep (Hydra multirun)
    regrun compare PATH...                     tables and plots over finished runs
    regrun resume RUN_DIR                      continue a run from its last checkpoint
    regrun prune PATH...                       evaluate finished runs with their smallest weights zeroed
"""

import atexit
import gc
import importlib
import logging
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import hydra
from omegaconf import OmegaConf

from regrun.cli.hydra_files import check_output_overrides, unwritten
from regrun.cli.job import check_output_dirs, claim_output_dir, fail, job
from regrun.config import conf_dir
from regrun.errors import RegrunError
from regrun.jobs.signals import STOP, StopNow, exit_code
from regrun.layout import COMPLETED

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
SUBCOMMANDS = {"compare": "regrun.cli.compare", "resume": "regrun.cli.resume", "prune": "regrun.cli.prune"}


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
    args = sys.argv[1:]
    if "--version" in args:  # Hydra's own flag would print Hydra's version
        print(version_line())
        return
    try:
        check_command_line(args)
    except RegrunError as err:
        fail(str(err))
    check_output_dirs(args)
    # config_path must be absolute: relative paths resolve against the package when the
    # app runs as a console script (hydra#2125).
    app = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(job)
    with ExitStack() as held:
        try:
            held.enter_context(claim_output_dir(args))
        except RegrunError as err:
            fail(str(err))
        try:
            with hydra_errors_raised():
                app()
        except StopNow:  # before a job started: nothing of a run was written
            print(f"regrun: interrupted by {STOP.name} before the run started; nothing was written", file=sys.stderr)
            raise SystemExit(STOP.exit_code) from None
        except KeyboardInterrupt:  # a second Ctrl-C
            print("regrun: aborted by a second Ctrl-C; the last checkpoint is intact", file=sys.stderr)
            raise SystemExit(130) from None
        except Exception as err:
            fail_on_hydra_error(err, args)
            raise
    from regrun.analysis.sweep import STATUSES, release_workers

    release_workers()  # a joblib sweep's idle worker processes
    # STATUSES: the jobs of the sweep that just ended (none after a single run, which exits
    # non-zero by itself when it did not complete); a sweep exits as its worst job.
    worst = max(STATUSES, key=exit_code, default=COMPLETED)
    STATUSES.clear()
    if exit_code(worst):
        raise SystemExit(exit_code(worst))


def version_line() -> str:
    """`regrun --version`: regrun's version (from the installed package's metadata, the one
    pyproject.toml writes), then Hydra's and Python's."""
    from regrun import __version__

    return f"regrun {__version__} (hydra-core {metadata.version('hydra-core')}, Python {platform.python_version()})"


# Hydra's flags that print something instead of running: one config, not a sweep's.
PRINT_FLAGS = ("--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")


def check_command_line(args: list[str]) -> None:
    """Refuse, before Hydra runs, what Hydra would take and regrun must not: an empty
    output folder (the run would be written into the current directory), a printing flag
    with a sweep (Hydra's traceback), and a sweep over a config group's options with one
    that does not exist (Hydra finds it only when that job starts, after the jobs before
    it ran)."""
    from hydra._internal.utils import get_args_parser

    from regrun.cli.hydra_errors import check_sweep_choices

    check_output_overrides(args)
    sweeping = {"-m", "--multirun"} & set(args)
    if sweeping and (flag := next((a for a in args if a in PRINT_FLAGS), None)):
        raise RegrunError(f"{flag} prints one run's config and cannot be combined with {sweeping.pop()}; "
                          f"allowed: {flag} without -m, with one value per swept key")
    if not sweeping or {"-h", "--help", "--hydra-help"} & set(args):
        return
    parser = get_args_parser()
    parser.error = _unparsable  # type: ignore[method-assign]  # Hydra says it, as it parses them again
    try:
        parsed = parser.parse_args(args)
    except ValueError:
        return
    if not parsed.config_dir or Path(parsed.config_dir).is_dir():
        check_sweep_choices(parsed.overrides, parsed.config_dir)


def _unparsable(message: str) -> NoReturn:
    raise ValueError(message)


@contextmanager
def hydra_errors_raised() -> Iterator[None]:
    """While Hydra runs, let its errors reach regrun instead of being printed by Hydra (in
    6 to 14 lines, exit 1): HYDRA_FULL_ERROR makes Hydra re-raise them."""
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved


def fail_on_hydra_error(err: Exception, args: list[str]) -> None:
    """Say Hydra's parse or composition error, or a full disk as Hydra wrote its files, in
    one line and exit 2; return for any other error (a bug: its traceback follows)."""
    from regrun.cli.hydra_errors import explain, is_hydra_error

    if isinstance(err, OSError) and (message := unwritten(err)):
        fail(message)
    if is_hydra_error(err):
        from hydra._internal.utils import get_args_parser

        parsed = get_args_parser().parse_args(args)  # Hydra parsed them so, before it failed
        config_dir = parsed.config_dir if parsed.config_dir and Path(parsed.config_dir).is_dir() else None
        fail(explain(err, parsed.overrides, config_dir))
