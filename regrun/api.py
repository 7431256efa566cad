"""regrun from Python (a notebook, a script): the command's code paths as two functions.

    import regrun
    summary = regrun.train(["reg=l1_activations", "trainer.epochs=1"])
    summary = regrun.train(["reg=my_preset"], config_dir="my_configs")   # as --config-dir
    rows = regrun.compare(["outputs/runs"])

`train` runs one job as the command does: Hydra composes conf/ with the same overrides,
and its `run_job` runs the command's job (regrun/cli/job.py) in the same run directory
(`outputs/runs/<date>/<time>`, or `hydra.run.dir=...`), writing the same files (Hydra's
`.hydra/` and `regrun.log` included); it returns summary.json's content. `compare` returns
the rows `regrun compare --format json` prints. Bad input raises `RegrunError` with the
command's one-line message, never `SystemExit`. A sweep is a loop over `train`.
"""

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from regrun.errors import RegrunError

# The command's flags, and what to do instead from Python.
FLAGS = {"-m": "a sweep is a loop: [regrun.train([f'seed={s}', ...]) for s in (0, 1, 2)]",
         "--multirun": "a sweep is a loop: [regrun.train([f'seed={s}', ...]) for s in (0, 1, 2)]",
         "--config-dir": "pass train(overrides, config_dir=DIR)", "-cd": "pass train(overrides, config_dir=DIR)"}


def train(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> dict[str, Any]:
    """Train one run as `regrun OVERRIDE...` would; returns its summary (summary.json).

    `overrides` is a list of the command's overrides (`["model=cnn", "trainer.epochs=3"]`);
    `config_dir` adds a folder of presets as `--config-dir` does (DIR/reg/NAME.yaml is then
    `reg=NAME`). The summary's `status` says how it ended (`completed`, `diverged`,
    `interrupted`); its run directory is `summary["run_dir"]`. A folder that already holds
    this run (a `hydra.run.dir` given again) is continued, as the command does. For a
    sweep, call `train` in a loop.
    """
    from regrun.cli.hydra_errors import explain, hydra_app, is_hydra_error
    from regrun.cli.hydra_files import check_output_overrides, unwritten

    overrides = checked_overrides(overrides)
    check_output_overrides(overrides)
    try:
        with _callers_logging(), hydra_app(config_dir) as hydra:
            ret = hydra.run(config_name="config", task_function=_job_summary, overrides=list(overrides))
    except RegrunError:
        raise
    except Exception as err:
        if isinstance(err, OSError) and (message := unwritten(err)):  # a full disk as Hydra wrote .hydra/
            raise RegrunError(message) from None
        if is_hydra_error(err):
            raise RegrunError(explain(err, overrides, config_dir)) from None
        raise
    return ret.return_value


def checked_overrides(overrides: object) -> list[str]:
    """`overrides` as a list of strings, or a one-line `RegrunError` saying what to pass."""
    if isinstance(overrides, str | bytes):
        raise RegrunError(f"overrides must be a list of strings, got the string {overrides!r}; "
                          f"pass a list: train([{overrides!r}])")
    if not isinstance(overrides, Iterable):
        raise RegrunError(f"overrides must be a list of strings such as ['trainer.epochs=1'], got "
                          f"{type(overrides).__name__} {overrides!r}")
    items = list(overrides)
    for item in items:
        if not isinstance(item, str):
            raise RegrunError(f"overrides must be a list of strings such as ['trainer.epochs=1']; {item!r} is "
                              f"a {type(item).__name__}: write it as 'KEY={item}'")
        if flag := next((f for f in FLAGS if item == f or item.startswith(f"{f}=")), None):
            raise RegrunError(f"{item!r}: train() takes overrides, not the command's flags; {FLAGS[flag]}")
        if item.startswith("-"):
            raise RegrunError(f"{item!r}: train() takes overrides (KEY=VALUE, GROUP=OPTION), not the command's "
                              "flags; run the `regrun` command for those")
    return items


def _job_summary(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's task function for `train`: the command's job, and its summary with `run_dir`."""
    from hydra.core.hydra_config import HydraConfig

    from regrun.cli.job import run_job_config

    ended = run_job_config(cfg)
    assert ended.summary is not None  # a single run that is refused raises
    return ended.summary | {"run_dir": str(HydraConfig.get().runtime.output_dir)}


@contextmanager
def _callers_logging() -> Iterator[None]:
    """While Hydra sets up its logging for the job (rich on the console, regrun.log in the
    run dir), keep the caller's: it is put back afterwards, the job's files closed."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def compare(paths: Iterable[str | Path], group_seeds: bool = False, baseline: str | None = None,
            sort: str | None = None, descending: bool = False) -> list[dict[str, Any]]:
    """The rows of `regrun compare PATH...` as dicts (full column names, plain numbers).

    `paths` are run directories, sweep roots or folders holding them; the options are the
    command's `--group-seeds`, `--baseline RUN`, `--sort COL` and `--desc`.
    """
    from regrun.analysis.compare import compare_runs, records, resolve_column
    from regrun.analysis.runs import find_runs

    if isinstance(paths, str | Path):
        paths = [paths]  # one path given bare: not a string's characters
    comparison = compare_runs(find_runs(list(paths)), group_seeds=group_seeds, baseline=baseline)
    comparison.sort(resolve_column(sort, comparison.columns, "sort") if sort else None, descending)
    return records(comparison)
