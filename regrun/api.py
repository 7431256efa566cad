"""regrun from Python (a notebook, a script): the command's code paths as two functions.

    import regrun
    summary = regrun.train(["reg=l1_activations", "trainer.epochs=1"])
    rows = regrun.compare(["outputs/runs"])

`train` composes conf/ with Hydra's compose API and the same overrides the command takes,
claims the same run directory (`outputs/runs/<date>/<time>`, or `hydra.run.dir=...`),
writes the same files (`.hydra/`, `regrun.log` included) and returns summary.json's
content. `compare` returns the rows `regrun compare --format json` prints. Bad input
raises `RegrunError` with the command's one-line message, never `SystemExit`.
"""

import logging
import logging.config
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from regrun.errors import RegrunError
from regrun.layout import HYDRA, HYDRA_CONFIG, HYDRA_OVERRIDES


def train(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train one run as `regrun OVERRIDE...` would; returns its summary (summary.json).

    The summary's `status` says how it ended (`completed`, `diverged`, `interrupted`); its
    run directory is `summary["run_dir"]`. A folder that already holds this run (a
    `hydra.run.dir` given again) is continued, as the command does.
    """
    from regrun.cli.job import run_or_continue  # registers the unique_dir resolver the run dir needs

    cfg = _compose(list(overrides))
    out = _claim_run_dir(cfg)
    plain = _job_config(cfg)
    _write_hydra_files(cfg, out, list(overrides))
    with _job_logging(cfg, out):
        summary = run_or_continue(plain, out)
    return summary | {"run_dir": str(out)}


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


def _compose(overrides: list[str]) -> DictConfig:
    """conf/ with the overrides, Hydra's own node included (for the run dir and logging)."""
    from regrun.cli import conf_dir

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:  # a bad override or an unknown preset
        raise RegrunError(str(err).strip().splitlines()[0]) from None


def _claim_run_dir(cfg: DictConfig) -> Path:
    """hydra.run.dir resolved (claiming a fresh folder through unique_dir), made absolute."""
    try:
        return Path(OmegaConf.select(cfg, "hydra.run.dir", throw_on_resolution_failure=True)).absolute()
    except OmegaConfBaseException as err:
        raise RegrunError(f"hydra.run.dir: {str(err).splitlines()[0]}") from None


def _job_config(cfg: DictConfig) -> dict[str, Any]:
    """The job's config as plain data, as the command's job gets it (Hydra's node left out)."""
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    try:
        return OmegaConf.to_container(job, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:  # a missing value (???) or a broken ${...}
        raise RegrunError(str(err).splitlines()[0]) from None


def _write_hydra_files(cfg: DictConfig, out: Path, overrides: list[str]) -> None:
    """.hydra/config.yaml and overrides.yaml, as Hydra writes them (regrun compare reads them)."""
    folder = out / HYDRA
    folder.mkdir(parents=True, exist_ok=True)
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    OmegaConf.save(job, folder / HYDRA_CONFIG)
    OmegaConf.save(OmegaConf.create(overrides), folder / HYDRA_OVERRIDES)


@contextmanager
def _job_logging(cfg: DictConfig, out: Path) -> Iterator[None]:
    """conf/hydra/job_logging (rich on the console, regrun.log in the run dir) while the run
    lasts; the caller's logging set-up is put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
    logging.config.dictConfig(OmegaConf.to_container(cfg.hydra.job_logging, resolve=True))
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
