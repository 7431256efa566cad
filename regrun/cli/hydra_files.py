"""The files Hydra writes for a job (`.hydra/` and the job log, regrun.log), written only
into a folder the job may write.

Hydra's `run_job` writes `.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` before it
calls the job, and opens the job log then. A folder another regrun process is writing, or
one holding another run, is refused by the job; by then Hydra would have overwritten that
run's files. So `hydra.output_subdir` is `${regrun_job_files:.hydra}`: this resolver,
which Hydra reads just before it writes, names no folder (Hydra then writes none) when
the job's folder is not the job's to write; the job log opens its file only at its first
line (`delay: true`), and a refused job takes its log off that file (`detach_job_log`).
"""

import contextlib
import copy
import logging
import shutil
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from regrun.config import to_plain
from regrun.errors import RegrunError
from regrun.layout import HYDRA, HYDRA_CONFIG, HYDRA_OVERRIDES, HYDRA_SETTINGS, LOG
from regrun.rundir.lock import holder
from regrun.rundir.resume import differing_keys, holds_run, read_config


def foreign(out: Path, cfg: DictConfig) -> str | None:
    """Why the job's folder `out` is not this job's to write (another process writes it,
    it holds another run, or its run's config is unreadable), or None when it is."""
    if who := holder(out):
        return f"in use by {who}"
    if not holds_run(out):
        return None
    try:
        task = copy.deepcopy(cfg)
        if "hydra" in task:
            with read_write(task), open_dict(task):
                del task["hydra"]
        plain: Any = OmegaConf.to_container(task, resolve=True, throw_on_missing=True)
        differing = differing_keys(read_config(out), plain)
    except (OmegaConfBaseException, RegrunError) as err:
        return str(err).splitlines()[0]
    return f"holds another run ({differing[0]} differs)" if differing else None


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """`cfg` resolved to plain data; a missing value (???) or a broken ${...} is a one-line
    `RegrunError` naming its key: "model.activation=${nope}: Interpolation key 'nope' not found"."""
    try:
        plain = to_plain(cfg, throw_on_missing=True)
    except OmegaConfBaseException as err:
        what = str(err).splitlines()[0]
        key = getattr(err, "full_key", None)
        raise RegrunError(f"{key}={_as_written(cfg, key)}: {what}" if key else what) from None
    return plain


def _as_written(cfg: DictConfig, key: str) -> str:
    """The value of `key` as the config writes it (an interpolation unresolved)."""
    parent, _, leaf = key.rpartition(".")
    try:
        node: Any = OmegaConf.select(cfg, parent) if parent else cfg
        return str(node._get_node(leaf)._value())  # the node's own text, not its resolution
    except Exception:  # a key OmegaConf names but cannot walk back to
        return "???"


def job_files(subdir: str, *, _root_: DictConfig) -> str | None:
    """`hydra.output_subdir`: `subdir` (.hydra) where the job may write, None (Hydra then
    writes no file) where it may not."""
    out = OmegaConf.select(_root_, "hydra.runtime.output_dir", default=None)
    return subdir if not out or not foreign(Path(out), _root_) else None


OmegaConf.register_new_resolver("regrun_job_files", job_files)


def detach_job_log(out: Path) -> None:
    """Take the job log's handlers off files in `out` (a folder the job refuses)."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == out.absolute():
            root.removeHandler(handler)
            handler.close()


def discard_job_files(out: Path) -> None:
    """Remove what Hydra and the job log wrote into `out` for a job that was refused before it
    wrote anything of its own (`out` held no run): its .hydra/ files and regrun.log."""
    detach_job_log(out)
    for name in (HYDRA_CONFIG, HYDRA_OVERRIDES, HYDRA_SETTINGS):
        (out / HYDRA / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: something else is there, and stays
        (out / HYDRA).rmdir()
    (out / LOG).unlink(missing_ok=True)


def unwritten(err: OSError) -> str | None:
    """For an OSError raised while Hydra wrote a job's `.hydra/` files (a full disk): the
    one-line message, with the partial files removed when the folder holds no run (so a
    later run or `regrun resume` finds no half-written state); None for any other OSError."""
    for frame, _ in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_name == "_save_config" and frame.f_globals.get("__name__") == "hydra.core.utils":
            folder, name = Path(str(frame.f_locals["output_dir"])), str(frame.f_locals["filename"])
            break
    else:
        return None
    if not holds_run(folder.parent):
        shutil.rmtree(folder, ignore_errors=True)
    return f"cannot write {folder / name}: {err.strerror or err}; free some space and run it again"


# The output folders a job writes into; an empty one would be the current directory.
OUTPUT_DIRS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")


def check_output_overrides(overrides: Sequence[str]) -> None:
    """Refuse an empty output folder (`hydra.run.dir=''`): Hydra would write the whole run
    into the current directory."""
    for line in overrides:
        key, _, value = line.lstrip("+").partition("=")
        if key in OUTPUT_DIRS and value.strip(" '\"") == "":
            raise RegrunError(f"{line}: an empty folder would write the run into the current directory; "
                              f"allowed: a folder path, e.g. {key}=outputs/my_run")
